//! Writers (being written).

/// pcap writer.
#[derive(Debug)]
pub struct PcapWriter;
/// pcapng writer.
#[derive(Debug)]
pub struct PcapNgWriter;
