//! The `como` command. (Skeleton: being written.)

fn main() {}
