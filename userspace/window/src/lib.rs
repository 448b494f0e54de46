//! The packet trace window of CoMo-rs (work in progress).
