//! The standard CoMo-rs modules (traffic, protocol, topaddr ...).
//!
//! Empty until the module API lands (issue "CoMo end to end on trace files").
