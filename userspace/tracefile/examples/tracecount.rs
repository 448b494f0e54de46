//! Prints, for each file argument, the detected format, link type, packet count and any error.

fn main() {
    for path in std::env::args().skip(1) {
        match como_tracefile::TraceReader::open(&path) {
            Err(e) => println!("{path}\topen-error\t{e}"),
            Ok(mut r) => {
                let (format, link) = (r.format(), r.link_type());
                let mut n = 0u64;
                let mut err = String::new();
                while let Some(p) = r.next_packet() {
                    match p {
                        Ok(_) => n += 1,
                        Err(e) => err = e.to_string(),
                    }
                }
                println!("{path}\t{format:?}\t{link:?}\t{n}\t{err}");
            }
        }
    }
}
