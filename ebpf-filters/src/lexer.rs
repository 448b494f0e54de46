//! Tokenizer for pcap-filter expressions, after libpcap 1.10.3's `scanner.l`.
//!
//! Like flex, the scanner takes the longest match at each position; on a tie the earlier rule
//! wins (keywords, then MAC addresses, numbers, dotted IPv4 prefixes, IPv6 addresses, named
//! constants such as `tcp-syn`, and finally plain identifiers). So `25-smtp` is one identifier,
//! `192.168` is a (partial) IPv4 address and `icmp-echo` is the number 8. Columns are 1-based
//! and count characters.

use crate::{ErrorKind, FilterError};

/// One token kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A reserved word, in canonical spelling (`ether`, `ppp`, `slip` are all `link`).
    Kw(&'static str),
    /// A number (decimal, 0x hex, leading-0 octal) or a named constant.
    Num(u32),
    /// Dotted IPv4 address or prefix (`10.1`, `192.168.1.1`).
    Hid(String),
    /// IPv6 address.
    Hid6(String),
    /// MAC address.
    Eid(String),
    /// ARCnet `$xx` address (always unsupported).
    Aid(String),
    /// Identifier (names, `\escaped` names, port ranges `25-53`).
    Id(String),
    /// Single-character operator or punctuation: `+ - * / % : [ ] < > ( ) & | ^ =`.
    Op(char),
    /// `>=`.
    Geq,
    /// `<=`.
    Leq,
    /// `!=`.
    Neq,
    /// `<<`.
    Lsh,
    /// `>>`.
    Rsh,
    /// `and` / `&&`.
    And,
    /// `or` / `||`.
    Or,
    /// `not` / `!`.
    Not,
    /// End of input.
    Eof,
}

/// A token with its 1-based column and source text.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    /// What it is.
    pub tok: Tok,
    /// 1-based column (characters) of its first character.
    pub col: usize,
    /// The source text.
    pub text: String,
}

/// Reserved words: (spelling, canonical name).
const KEYWORDS: &[(&str, &str)] = &[
    ("dst", "dst"),
    ("src", "src"),
    ("link", "link"),
    ("ether", "link"),
    ("ppp", "link"),
    ("slip", "link"),
    ("fddi", "fddi"),
    ("tr", "tr"),
    ("wlan", "wlan"),
    ("arp", "arp"),
    ("rarp", "rarp"),
    ("ip", "ip"),
    ("sctp", "sctp"),
    ("tcp", "tcp"),
    ("udp", "udp"),
    ("icmp", "icmp"),
    ("igmp", "igmp"),
    ("igrp", "igrp"),
    ("pim", "pim"),
    ("vrrp", "vrrp"),
    ("carp", "carp"),
    ("radio", "radio"),
    ("ip6", "ip6"),
    ("icmp6", "icmp6"),
    ("ah", "ah"),
    ("esp", "esp"),
    ("atalk", "atalk"),
    ("aarp", "aarp"),
    ("decnet", "decnet"),
    ("lat", "lat"),
    ("sca", "sca"),
    ("moprc", "moprc"),
    ("mopdl", "mopdl"),
    ("iso", "iso"),
    ("esis", "esis"),
    ("es-is", "esis"),
    ("isis", "isis"),
    ("is-is", "isis"),
    ("l1", "l1"),
    ("l2", "l2"),
    ("iih", "iih"),
    ("lsp", "lsp"),
    ("snp", "snp"),
    ("csnp", "csnp"),
    ("psnp", "psnp"),
    ("clnp", "clnp"),
    ("stp", "stp"),
    ("ipx", "ipx"),
    ("netbeui", "netbeui"),
    ("host", "host"),
    ("net", "net"),
    ("mask", "mask"),
    ("port", "port"),
    ("portrange", "portrange"),
    ("proto", "proto"),
    ("protochain", "protochain"),
    ("gateway", "gateway"),
    ("type", "type"),
    ("subtype", "subtype"),
    ("direction", "dir"),
    ("dir", "dir"),
    ("address1", "addr1"),
    ("addr1", "addr1"),
    ("address2", "addr2"),
    ("addr2", "addr2"),
    ("address3", "addr3"),
    ("addr3", "addr3"),
    ("address4", "addr4"),
    ("addr4", "addr4"),
    ("ra", "ra"),
    ("ta", "ta"),
    ("less", "less"),
    ("greater", "greater"),
    ("byte", "byte"),
    ("broadcast", "broadcast"),
    ("multicast", "multicast"),
    ("len", "len"),
    ("length", "len"),
    ("inbound", "inbound"),
    ("outbound", "outbound"),
    ("ifindex", "ifindex"),
    ("vlan", "vlan"),
    ("mpls", "mpls"),
    ("pppoed", "pppoed"),
    ("pppoes", "pppoes"),
    ("geneve", "geneve"),
    ("lane", "lane"),
    ("llc", "llc"),
    ("metac", "metac"),
    ("bcc", "bcc"),
    ("oam", "oam"),
    ("oamf4", "oamf4"),
    ("oamf4ec", "oamf4ec"),
    ("oamf4sc", "oamf4sc"),
    ("sc", "sc"),
    ("ilmic", "ilmic"),
    ("vpi", "vpi"),
    ("vci", "vci"),
    ("connectmsg", "connectmsg"),
    ("metaconnect", "metaconnect"),
    ("on", "on"),
    ("ifname", "on"),
    ("rset", "rset"),
    ("ruleset", "rset"),
    ("rnr", "rnr"),
    ("rulenum", "rnr"),
    ("srnr", "srnr"),
    ("subrulenum", "srnr"),
    ("reason", "reason"),
    ("action", "action"),
    ("fisu", "fisu"),
    ("lssu", "lssu"),
    ("lsu", "lssu"),
    ("msu", "msu"),
    ("hfisu", "hfisu"),
    ("hlssu", "hlssu"),
    ("hmsu", "hmsu"),
    ("sio", "sio"),
    ("opc", "opc"),
    ("dpc", "dpc"),
    ("sls", "sls"),
    ("hsio", "hsio"),
    ("hopc", "hopc"),
    ("hdpc", "hdpc"),
    ("hsls", "hsls"),
];

/// Named constants that scan as numbers.
const NAMED_NUMBERS: &[(&str, u32)] = &[
    ("icmptype", 0),
    ("icmpcode", 1),
    ("icmp-echoreply", 0),
    ("icmp-unreach", 3),
    ("icmp-sourcequench", 4),
    ("icmp-redirect", 5),
    ("icmp-echo", 8),
    ("icmp-routeradvert", 9),
    ("icmp-routersolicit", 10),
    ("icmp-timxceed", 11),
    ("icmp-paramprob", 12),
    ("icmp-tstamp", 13),
    ("icmp-tstampreply", 14),
    ("icmp-ireq", 15),
    ("icmp-ireqreply", 16),
    ("icmp-maskreq", 17),
    ("icmp-maskreply", 18),
    ("icmp6type", 0),
    ("icmp6code", 1),
    ("icmp6-destinationunreach", 1),
    ("icmp6-packettoobig", 2),
    ("icmp6-timeexceeded", 3),
    ("icmp6-parameterproblem", 4),
    ("icmp6-echo", 128),
    ("icmp6-echoreply", 129),
    ("icmp6-multicastlistenerquery", 130),
    ("icmp6-multicastlistenerreportv1", 131),
    ("icmp6-multicastlistenerdone", 132),
    ("icmp6-routersolicit", 133),
    ("icmp6-routeradvert", 134),
    ("icmp6-neighborsolicit", 135),
    ("icmp6-neighboradvert", 136),
    ("icmp6-redirect", 137),
    ("icmp6-routerrenum", 138),
    ("icmp6-nodeinformationquery", 139),
    ("icmp6-nodeinformationresponse", 140),
    ("icmp6-ineighbordiscoverysolicit", 141),
    ("icmp6-ineighbordiscoveryadvert", 142),
    ("icmp6-multicastlistenerreportv2", 143),
    ("icmp6-homeagentdiscoveryrequest", 144),
    ("icmp6-homeagentdiscoveryreply", 145),
    ("icmp6-mobileprefixsolicit", 146),
    ("icmp6-mobileprefixadvert", 147),
    ("icmp6-certpathsolicit", 148),
    ("icmp6-certpathadvert", 149),
    ("icmp6-multicastrouteradvert", 151),
    ("icmp6-multicastroutersolicit", 152),
    ("icmp6-multicastrouterterm", 153),
    ("tcpflags", 13),
    ("tcp-fin", 0x01),
    ("tcp-syn", 0x02),
    ("tcp-rst", 0x04),
    ("tcp-push", 0x08),
    ("tcp-ack", 0x10),
    ("tcp-urg", 0x20),
    ("tcp-ece", 0x40),
    ("tcp-cwr", 0x80),
];

/// Longest word (name, address, number) accepted.
const MAX_WORD: usize = 256;

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// `{N}`: decimal digits or 0x followed by hex digits.
fn is_n(s: &str) -> bool {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return is_hex(h);
    }
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// `{B}`: one or two hex digits.
fn is_b(s: &str) -> bool {
    (1..=2).contains(&s.len()) && is_hex(s)
}

fn is_mac(s: &str) -> bool {
    for sep in [':', '-', '.'] {
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.len() == 6 && parts.iter().all(|p| is_b(p)) {
            return true;
        }
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() == 3 && parts.iter().all(|p| p.len() == 4 && is_hex(p)) {
        return true;
    }
    s.len() == 12 && is_hex(s)
}

fn is_hid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (2..=4).contains(&parts.len()) && parts.iter().all(|p| is_n(p))
}

fn is_id(s: &str) -> bool {
    let mut cs = s.chars();
    let Some(first) = cs.next() else { return false };
    if !first.is_ascii_alphanumeric() {
        return false;
    }
    if s.len() == 1 {
        return true;
    }
    let last = s.chars().last().unwrap_or(first);
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && (last.is_ascii_alphanumeric() || last == '.')
}

fn syntax(col: usize, message: String) -> FilterError {
    FilterError {
        column: col,
        message,
        kind: ErrorKind::Syntax,
    }
}

/// Parses a `{N}` number the way `stou` does (octal with a leading 0, errors on overflow).
fn number(s: &str, col: usize) -> Result<u32, FilterError> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    let mut n: u64 = 0;
    for c in digits.chars() {
        let d = c
            .to_digit(radix)
            .ok_or_else(|| syntax(col, format!("number {s} contains non-octal digit")))?;
        n = n * u64::from(radix) + u64::from(d);
        if n > u64::from(u32::MAX) {
            return Err(syntax(col, format!("number {s} overflows 32 bits")));
        }
    }
    Ok(n as u32)
}

/// Classifies a word (a maximal candidate) or returns None if no pattern matches all of it.
fn classify(w: &str, col: usize) -> Result<Option<Tok>, FilterError> {
    if let Some(&(_, canon)) = KEYWORDS.iter().find(|(k, _)| *k == w) {
        return Ok(Some(Tok::Kw(canon)));
    }
    if is_mac(w) {
        return Ok(Some(Tok::Eid(w.to_string())));
    }
    if is_n(w) {
        return Ok(Some(Tok::Num(number(w, col)?)));
    }
    if is_hid(w) {
        return Ok(Some(Tok::Hid(w.to_string())));
    }
    if w.contains(':') && w.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(Some(Tok::Hid6(w.to_string())));
    }
    if w.ends_with(':') && !w.starts_with(':') {
        // `{B}:+({B}:+)+`: a malformed ethernet address.
        let parts: Vec<&str> = w.split(':').filter(|p| !p.is_empty()).collect();
        if parts.len() >= 2 && parts.iter().all(|p| is_b(p)) {
            return Err(syntax(col, format!("bogus ethernet address {w}")));
        }
    }
    if let Some(&(_, v)) = NAMED_NUMBERS.iter().find(|(k, _)| *k == w) {
        return Ok(Some(Tok::Num(v)));
    }
    if is_id(w) {
        return Ok(Some(Tok::Id(w.to_string())));
    }
    Ok(None)
}

/// Splits `src` into tokens (the last one is [`Tok::Eof`]).
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            i += 1;
            continue;
        }
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let op2 = match two.as_str() {
            ">=" => Some(Tok::Geq),
            "<=" => Some(Tok::Leq),
            "!=" => Some(Tok::Neq),
            "==" => Some(Tok::Op('=')),
            "<<" => Some(Tok::Lsh),
            ">>" => Some(Tok::Rsh),
            "&&" => Some(Tok::And),
            "||" => Some(Tok::Or),
            _ => None,
        };
        if let Some(t) = op2 {
            out.push(Token {
                tok: t,
                col,
                text: two,
            });
            i += 2;
            continue;
        }
        if c == '$' {
            let mut j = i + 1;
            while j < chars.len() && j < i + 3 && chars[j].is_ascii_hexdigit() {
                j += 1;
            }
            if j == i + 1 {
                return Err(syntax(col, "illegal character '$'".into()));
            }
            let text: String = chars[i..j].iter().collect();
            out.push(Token {
                tok: Tok::Aid(text.clone()),
                col,
                text,
            });
            i = j;
            continue;
        }
        if c == '\\' {
            let mut j = i + 1;
            while j < chars.len() && !matches!(chars[j], ' ' | '!' | '(' | ')' | '\n' | '\t') {
                j += 1;
            }
            if j == i + 1 {
                return Err(syntax(col, "illegal character '\\'".into()));
            }
            let name: String = chars[i + 1..j].iter().collect();
            let text: String = chars[i..j].iter().collect();
            out.push(Token {
                tok: Tok::Id(name),
                col,
                text,
            });
            i = j;
            continue;
        }
        if c.is_ascii_alphanumeric() || (c == ':' && chars.get(i + 1) == Some(&':')) {
            let mut j = i;
            while j < chars.len() && is_word_char(chars[j]) {
                j += 1;
            }
            if j - i > MAX_WORD {
                return Err(syntax(
                    col,
                    format!("word longer than {MAX_WORD} characters"),
                ));
            }
            // Longest prefix that some pattern matches (flex semantics).
            let mut end = j;
            loop {
                let w: String = chars[i..end].iter().collect();
                if let Some(t) = classify(&w, col)? {
                    out.push(Token {
                        tok: t,
                        col,
                        text: w,
                    });
                    i = end;
                    break;
                }
                end -= 1;
                if end == i {
                    let bad = chars[i];
                    return Err(syntax(col, format!("illegal character '{bad}'")));
                }
            }
            continue;
        }
        let t = match c {
            '+' | '-' | '*' | '/' | '%' | ':' | '[' | ']' | '<' | '>' | '(' | ')' | '&' | '|'
            | '^' | '=' => Tok::Op(c),
            '!' => Tok::Not,
            _ => return Err(syntax(col, format!("illegal character '{c}'"))),
        };
        out.push(Token {
            tok: t,
            col,
            text: c.to_string(),
        });
        i += 1;
    }
    out.push(Token {
        tok: Tok::Eof,
        col: chars.len() + 1,
        text: String::new(),
    });
    // `and`, `or`, `not` are words.
    for t in &mut out {
        if let Tok::Kw(_) | Tok::Id(_) = t.tok {
            match t.text.as_str() {
                "and" => t.tok = Tok::And,
                "or" => t.tok = Tok::Or,
                "not" => t.tok = Tok::Not,
                _ => {}
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s)
            .map(|v| v.into_iter().map(|t| t.tok).collect())
            .unwrap_or_default()
    }

    #[test]
    fn flex_like_longest_match() {
        assert_eq!(toks("25-smtp")[0], Tok::Id("25-smtp".into()));
        assert_eq!(toks("192.168")[0], Tok::Hid("192.168".into()));
        assert_eq!(toks("tcp-syn")[0], Tok::Num(2));
        assert_eq!(toks("0x10")[0], Tok::Num(16));
        assert_eq!(toks("010")[0], Tok::Num(8));
        assert_eq!(toks("ab:cd:ef:0:0:1")[0], Tok::Eid("ab:cd:ef:0:0:1".into()));
        assert_eq!(toks("fe80::1")[0], Tok::Hid6("fe80::1".into()));
        assert_eq!(toks("::1")[0], Tok::Hid6("::1".into()));
        assert_eq!(
            toks("fe80::1122:33ff:254.68.85.102")[0],
            Tok::Hid6("fe80::1122:33ff:254.68.85.102".into())
        );
        assert_eq!(
            toks("tcp[2:2]"),
            vec![
                Tok::Kw("tcp"),
                Tok::Op('['),
                Tok::Num(2),
                Tok::Op(':'),
                Tok::Num(2),
                Tok::Op(']'),
                Tok::Eof
            ]
        );
        assert_eq!(toks("\\tcp")[0], Tok::Id("tcp".into()));
        assert_eq!(toks("a && !b")[1], Tok::And);
        assert_eq!(toks("ether")[0], Tok::Kw("link"));
    }

    #[test]
    fn bad_input_is_an_error_with_column() {
        let e = tokenize("port 80 # x").err();
        assert_eq!(e.map(|e| e.column), Some(9));
        assert!(tokenize("09").is_err());
        assert!(tokenize("99999999999").is_err());
    }
}
