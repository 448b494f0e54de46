//! The CoMo-rs storage manager (CoMo's "bytestream"): one append-only, time-indexed database per
//! module. (Skeleton: being written for the issue "CoMo end to end on trace files".)
