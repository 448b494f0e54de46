//! Recursive-descent parser for pcap-filter expressions, following libpcap 1.10.3's
//! `grammar.y` (LALR) closely enough to accept and reject the same expressions.
//!
//! * `and` and `or` have the same precedence and associate to the left; `not` binds tighter.
//! * Qualifier inheritance: after `and`/`or`, a bare value (`5.6.7.8`, `80`, `not 80`,
//!   `(1.2.3.4 or 5.6.7.8)`) takes the qualifier of the expression on its left, exactly as the
//!   grammar's `$<blk>0` does; after a term with no qualifier (`tcp`, a relation) a bare value
//!   is a syntax error, as in libpcap.
//! * Arithmetic: `|` < `&` < `<< >>` < `+ -` < `* /`; `%` and `^` have no precedence in
//!   libpcap's grammar, so bison shifts: they take the nearest operand on the left and the
//!   whole remaining arithmetic expression on the right (`a % 2 * 3` is `a % 6`).
//!
//! Where the grammar is ambiguous for a one-token-lookahead descent (after `and`/`or`: a term
//! or a bare value?), the parser tries the term first and falls back to the value, with a
//! memo of failures so nesting cannot make it exponential.

use std::collections::HashMap;

use crate::ast::{AddrQ, ArOp, Arth, Ast, Dir, IdVal, Prim, Proto, Qual, RelOp};
use crate::lexer::{Tok, Token};
use crate::{ErrorKind, FilterError};

/// Deepest nesting of parentheses, `not` and unary minus accepted.
const MAX_DEPTH: usize = 200;

/// Longest expression accepted, in tokens (keeps every recursive pass over the tree shallow).
pub(crate) const MAX_TOKENS: usize = 4096;

type Q = Option<Qual>;

const NEEDS_QUAL: &str = "syntax error: a value needs a qualifier";
type PResult<T> = Result<T, FilterError>;

/// Parses a token list (ending in Eof). `Ok(None)` for an empty expression.
pub(crate) fn parse(tokens: &[Token]) -> PResult<Option<Ast>> {
    if tokens.len() > MAX_TOKENS {
        let col = tokens.get(MAX_TOKENS).map_or(1, |t| t.col);
        return Err(syntax(
            col,
            format!("expression too long (more than {MAX_TOKENS} tokens)"),
        ));
    }
    let mut p = Parser {
        t: tokens,
        pos: 0,
        depth: 0,
        memo: HashMap::new(),
    };
    if p.at_eof() {
        return Ok(None);
    }
    let (ast, _) = p.expr(None)?;
    if !p.at_eof() {
        return Err(p.syntax_here());
    }
    Ok(Some(ast))
}

fn syntax(col: usize, msg: impl Into<String>) -> FilterError {
    FilterError {
        column: col,
        message: msg.into(),
        kind: ErrorKind::Syntax,
    }
}

pub(crate) fn unsupported(col: usize, msg: impl Into<String>) -> FilterError {
    FilterError {
        column: col,
        message: msg.into(),
        kind: ErrorKind::Unsupported,
    }
}

/// Picks the more informative of two failures: the one further right; on a tie, an
/// "unsupported" over a plain syntax error.
fn better(a: FilterError, b: FilterError) -> FilterError {
    if b.column > a.column
        || (b.column == a.column && a.kind == ErrorKind::Syntax && b.kind != ErrorKind::Syntax)
    {
        b
    } else {
        a
    }
}

/// Supported protocol qualifiers.
fn pname(kw: &str) -> Option<Proto> {
    Some(match kw {
        "link" => Proto::Link,
        "ip" => Proto::Ip,
        "ip6" => Proto::Ip6,
        "arp" => Proto::Arp,
        "rarp" => Proto::Rarp,
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "sctp" => Proto::Sctp,
        "icmp" => Proto::Icmp,
        "icmp6" => Proto::Icmp6,
        "igmp" => Proto::Igmp,
        "igrp" => Proto::Igrp,
        "pim" => Proto::Pim,
        "vrrp" => Proto::Vrrp,
        "carp" => Proto::Carp,
        "ah" => Proto::Ah,
        "esp" => Proto::Esp,
        _ => return None,
    })
}

/// Keywords of constructs outside the supported set, with the name used in the message.
fn unsupported_kw(kw: &str) -> Option<&'static str> {
    Some(match kw {
        "radio" => "radio headers",
        "fddi" => "FDDI link layer",
        "tr" => "Token Ring link layer",
        "wlan" => "802.11 link-layer qualifier",
        "atalk" => "AppleTalk",
        "aarp" => "AppleTalk ARP",
        "decnet" => "DECnet",
        "lat" => "DEC LAT",
        "sca" => "DEC SCA",
        "moprc" => "DEC MOP",
        "mopdl" => "DEC MOP",
        "iso" => "OSI",
        "esis" => "OSI ES-IS",
        "isis" => "OSI IS-IS",
        "l1" | "l2" | "iih" | "lsp" | "snp" | "csnp" | "psnp" => "IS-IS PDU type",
        "clnp" => "OSI CLNP",
        "stp" => "spanning tree",
        "ipx" => "IPX",
        "netbeui" => "NetBEUI",
        "gateway" => "gateway (needs DNS and /etc/ethers)",
        "type" | "subtype" | "dir" => "802.11 management predicates (wlan type/subtype/dir)",
        "addr1" | "addr2" | "addr3" | "addr4" | "ra" | "ta" => "802.11 address qualifiers",
        "inbound" => "packet direction",
        "outbound" => "packet direction",
        "ifindex" => "interface index",
        "pppoed" => "PPPoE discovery",
        "llc" => "802.2 LLC",
        "lane" | "metac" | "bcc" | "oam" | "oamf4" | "oamf4ec" | "oamf4sc" | "sc" | "ilmic"
        | "vpi" | "vci" | "connectmsg" | "metaconnect" => "ATM predicates",
        "on" | "rset" | "rnr" | "srnr" | "reason" | "action" => "pflog predicates",
        "fisu" | "lssu" | "msu" | "hfisu" | "hlssu" | "hmsu" | "sio" | "opc" | "dpc" | "sls"
        | "hsio" | "hopc" | "hdpc" | "hsls" => "SS7/MTP predicates",
        _ => return None,
    })
}

fn unsupported_msg(text: &str, desc: &str) -> String {
    if text == desc {
        format!("'{text}' is not supported by this filter compiler")
    } else {
        format!("'{text}' ({desc}) is not supported by this filter compiler")
    }
}

struct Parser<'a> {
    t: &'a [Token],
    pos: usize,
    depth: usize,
    memo: HashMap<(usize, u8, Q), FilterError>,
}

impl std::hash::Hash for Qual {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.proto as u8).hash(state);
        (self.dir as u8).hash(state);
        (self.addr as u8).hash(state);
    }
}

impl<'a> Parser<'a> {
    fn tok(&self) -> &Tok {
        self.t.get(self.pos).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn tok_at(&self, i: usize) -> &Tok {
        self.t.get(i).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn col(&self) -> usize {
        self.t
            .get(self.pos)
            .map_or_else(|| self.t.last().map_or(1, |t| t.col), |t| t.col)
    }

    fn text(&self) -> String {
        self.t
            .get(self.pos)
            .map_or_else(String::new, |t| t.text.clone())
    }

    fn at_eof(&self) -> bool {
        matches!(self.tok(), Tok::Eof)
    }

    fn bump(&mut self) {
        if self.pos < self.t.len() {
            self.pos += 1;
        }
    }

    fn syntax_here(&self) -> FilterError {
        let t = self.t.get(self.pos);
        match t {
            Some(t) if !matches!(t.tok, Tok::Eof) => {
                syntax(t.col, format!("syntax error at '{}'", t.text))
            }
            _ => syntax(self.col(), "syntax error: unexpected end of expression"),
        }
    }

    fn expect_op(&mut self, c: char) -> PResult<()> {
        if *self.tok() == Tok::Op(c) {
            self.bump();
            Ok(())
        } else {
            Err(self.syntax_here())
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(syntax(self.col(), "expression nested too deeply"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// expr: term ((and|or) (term|id))*
    fn expr(&mut self, ctx: Q) -> PResult<(Ast, Q)> {
        let (mut a, mut q) = self.term(ctx)?;
        loop {
            let is_and = match self.tok() {
                Tok::And => true,
                Tok::Or => false,
                _ => break,
            };
            self.bump();
            let (b, q2) = self.term_or_id(q)?;
            a = if is_and {
                Ast::And(Box::new(a), Box::new(b))
            } else {
                Ast::Or(Box::new(a), Box::new(b))
            };
            q = q2;
        }
        Ok((a, q))
    }

    fn term_or_id(&mut self, ctx: Q) -> PResult<(Ast, Q)> {
        if matches!(
            self.tok(),
            Tok::Id(_) | Tok::Hid(_) | Tok::Hid6(_) | Tok::Eid(_) | Tok::Aid(_)
        ) {
            return self.id(ctx);
        }
        let save = self.pos;
        let e1 = match self.memo.get(&(save, 0, ctx)) {
            Some(e) => e.clone(),
            None => match self.term(ctx) {
                Ok(r) => return Ok(r),
                Err(e) => {
                    self.memo.insert((save, 0, ctx), e.clone());
                    e
                }
            },
        };
        self.pos = save;
        if let Some(e2) = self.memo.get(&(save, 1, ctx)) {
            return Err(better(e1, e2.clone()));
        }
        match self.id(ctx) {
            Ok(r) => Ok(r),
            Err(e2) => {
                self.memo.insert((save, 1, ctx), e2.clone());
                self.pos = save;
                if ctx.is_none() && e2.message.starts_with(NEEDS_QUAL) {
                    return Err(e2);
                }
                Err(better(e1, e2))
            }
        }
    }

    /// term: not term | rterm
    fn term(&mut self, ctx: Q) -> PResult<(Ast, Q)> {
        if *self.tok() == Tok::Not {
            self.bump();
            self.enter()?;
            let (a, q) = self.term(ctx)?;
            self.leave();
            return Ok((Ast::Not(Box::new(a)), q));
        }
        self.rterm(ctx)
    }

    fn rterm(&mut self, ctx: Q) -> PResult<(Ast, Q)> {
        let col = self.col();
        match self.tok().clone() {
            Tok::Kw(kw) => {
                if let Some(p) = pname(kw) {
                    let next = self.tok_at(self.pos + 1).clone();
                    match next {
                        Tok::Op('[') => self.relation(col),
                        Tok::Kw("broadcast") => {
                            self.bump();
                            self.bump();
                            Ok((Ast::Prim(col, Prim::Broadcast(p)), None))
                        }
                        Tok::Kw("multicast") => {
                            self.bump();
                            self.bump();
                            Ok((Ast::Prim(col, Prim::Multicast(p)), None))
                        }
                        Tok::Kw(k2)
                            if is_head_kw(k2) || unsupported_kw(k2).is_some() && is_qual_kw(k2) =>
                        {
                            self.bump();
                            self.head(p, col)
                        }
                        _ => {
                            self.bump();
                            Ok((Ast::Prim(col, Prim::Abbrev(p)), None))
                        }
                    }
                } else if is_head_kw(kw) {
                    self.head(Proto::Default, col)
                } else {
                    match kw {
                        "broadcast" => {
                            self.bump();
                            Ok((Ast::Prim(col, Prim::Broadcast(Proto::Default)), None))
                        }
                        "multicast" => {
                            self.bump();
                            Ok((Ast::Prim(col, Prim::Multicast(Proto::Default)), None))
                        }
                        "less" | "greater" => {
                            self.bump();
                            let Tok::Num(n) = *self.tok() else {
                                return Err(self.syntax_here());
                            };
                            self.bump();
                            let p = if kw == "less" {
                                Prim::Less(n)
                            } else {
                                Prim::Greater(n)
                            };
                            Ok((Ast::Prim(col, p), None))
                        }
                        "vlan" | "mpls" | "pppoes" | "geneve" => {
                            self.bump();
                            let save = self.pos;
                            let n = match self.pnum() {
                                Ok(n) => Some(n),
                                Err(_) => {
                                    self.pos = save;
                                    None
                                }
                            };
                            let p = match kw {
                                "vlan" => Prim::Vlan(n),
                                "mpls" => Prim::Mpls(n),
                                "pppoes" => Prim::Pppoes(n),
                                _ => Prim::Geneve(n),
                            };
                            Ok((Ast::Prim(col, p), None))
                        }
                        "len" => self.relation(col),
                        "byte" => {
                            self.bump();
                            let Tok::Num(idx) = *self.tok() else {
                                return Err(self.syntax_here());
                            };
                            self.bump();
                            let op = match *self.tok() {
                                Tok::Op(c @ ('=' | '<' | '>' | '&' | '|')) => c,
                                _ => return Err(self.syntax_here()),
                            };
                            self.bump();
                            let Tok::Num(v) = *self.tok() else {
                                return Err(self.syntax_here());
                            };
                            self.bump();
                            Ok((Ast::Prim(col, Prim::Byte(idx, op, v)), None))
                        }
                        _ => match unsupported_kw(kw) {
                            Some(name) => {
                                Err(unsupported(col, unsupported_msg(&self.text(), name)))
                            }
                            None => Err(self.syntax_here()),
                        },
                    }
                }
            }
            Tok::Num(_) | Tok::Op('-') => self.relation(col),
            Tok::Op('(') => {
                if self.paren_is_arith() {
                    return self.relation(col);
                }
                self.bump();
                self.enter()?;
                let (a, _) = self.expr(ctx)?;
                self.leave();
                self.expect_op(')')?;
                Ok((a, ctx))
            }
            _ => Err(self.syntax_here()),
        }
    }

    /// Whether the parenthesised group starting here is followed by an arithmetic or
    /// comparison operator (then it is arithmetic, not a boolean group).
    fn paren_is_arith(&self) -> bool {
        let mut depth = 0usize;
        let mut i = self.pos;
        while i < self.t.len() {
            match self.tok_at(i) {
                Tok::Op('(') => depth += 1,
                Tok::Op(')') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return matches!(
                            self.tok_at(i + 1),
                            Tok::Op(
                                '+' | '-' | '*' | '/' | '%' | '&' | '|' | '^' | '>' | '<' | '='
                            ) | Tok::Lsh
                                | Tok::Rsh
                                | Tok::Geq
                                | Tok::Leq
                                | Tok::Neq
                        );
                    }
                }
                Tok::Eof => return false,
                _ => {}
            }
            i += 1;
        }
        false
    }

    /// head id, with the protocol qualifier (if any) already consumed.
    fn head(&mut self, proto: Proto, col: usize) -> PResult<(Ast, Q)> {
        let mut dir = Dir::Default;
        let mut addr = AddrQ::Default;
        let mut any = false;
        if let Tok::Kw(k @ ("src" | "dst")) = *self.tok() {
            self.bump();
            any = true;
            dir = if k == "src" { Dir::Src } else { Dir::Dst };
            let other = if k == "src" { "dst" } else { "src" };
            if matches!(self.tok(), Tok::Or | Tok::And)
                && *self.tok_at(self.pos + 1) == Tok::Kw(other)
            {
                dir = if *self.tok() == Tok::Or {
                    Dir::Or
                } else {
                    Dir::And
                };
                self.bump();
                self.bump();
            }
        } else if let Tok::Kw(k) = *self.tok() {
            if let Some(name) = unsupported_kw(k).filter(|_| is_qual_kw(k)) {
                return Err(unsupported(self.col(), unsupported_msg(&self.text(), name)));
            }
        }
        match *self.tok() {
            Tok::Kw(k @ ("host" | "net" | "port" | "portrange")) => {
                self.bump();
                addr = match k {
                    "host" => AddrQ::Host,
                    "net" => AddrQ::Net,
                    "port" => AddrQ::Port,
                    _ => AddrQ::Portrange,
                };
            }
            Tok::Kw(k @ ("proto" | "protochain")) if !any => {
                self.bump();
                addr = if k == "proto" {
                    AddrQ::Proto
                } else {
                    AddrQ::Protochain
                };
            }
            Tok::Kw("gateway") if !any => {
                return Err(unsupported(
                    self.col(),
                    unsupported_msg("gateway", "gateway"),
                ));
            }
            _ if any => {}
            _ => return Err(self.syntax_here()),
        }
        let (mut a, q) = self.id(Some(Qual { proto, dir, addr }))?;
        if let Ast::Prim(c, _) = &mut a {
            *c = col;
        }
        Ok((a, q))
    }

    /// id: not id | '(' pid ')' | pnum | nid
    fn id(&mut self, ctx: Q) -> PResult<(Ast, Q)> {
        let col = self.col();
        match self.tok().clone() {
            Tok::Not => {
                self.bump();
                self.enter()?;
                let (a, q) = self.id(ctx)?;
                self.leave();
                Ok((Ast::Not(Box::new(a)), q))
            }
            Tok::Op('(') => {
                let save = self.pos;
                // `(80)` is a pnum.
                if let Ok(n) = self.pnum() {
                    return Ok((self.mk_id(col, ctx, IdVal::Num(n))?, ctx));
                }
                self.pos = save;
                self.bump();
                self.enter()?;
                let r = self.pid(ctx)?;
                self.leave();
                self.expect_op(')')?;
                Ok((r, ctx))
            }
            Tok::Num(n) => {
                self.bump();
                Ok((self.mk_id(col, ctx, IdVal::Num(n))?, ctx))
            }
            _ => {
                let a = self.nid(ctx)?;
                Ok((a, ctx))
            }
        }
    }

    /// pid: (nid | pnum) ((and|or) id)*
    fn pid(&mut self, ctx: Q) -> PResult<Ast> {
        let col = self.col();
        let mut a = match self.tok().clone() {
            Tok::Num(_) | Tok::Op('(') => {
                let n = self.pnum()?;
                self.mk_id(col, ctx, IdVal::Num(n))?
            }
            Tok::Not => self.id(ctx)?.0,
            _ => self.nid(ctx)?,
        };
        loop {
            let is_and = match self.tok() {
                Tok::And => true,
                Tok::Or => false,
                _ => break,
            };
            self.bump();
            let (b, _) = self.id(ctx)?;
            a = if is_and {
                Ast::And(Box::new(a), Box::new(b))
            } else {
                Ast::Or(Box::new(a), Box::new(b))
            };
        }
        Ok(a)
    }

    /// nid: ID | HID ['/' NUM | mask HID] | HID6 ['/' NUM] | EID | AID
    fn nid(&mut self, ctx: Q) -> PResult<Ast> {
        let col = self.col();
        let val = match self.tok().clone() {
            Tok::Id(s) => {
                self.bump();
                IdVal::Name(s)
            }
            Tok::Hid(s) => {
                self.bump();
                if *self.tok() == Tok::Op('/') {
                    self.bump();
                    let Tok::Num(n) = *self.tok() else {
                        return Err(self.syntax_here());
                    };
                    self.bump();
                    IdVal::HidLen(s, n)
                } else if *self.tok() == Tok::Kw("mask") {
                    self.bump();
                    let Tok::Hid(m) = self.tok().clone() else {
                        return Err(self.syntax_here());
                    };
                    self.bump();
                    IdVal::HidMask(s, m)
                } else {
                    IdVal::Hid(s)
                }
            }
            Tok::Hid6(s) => {
                self.bump();
                if *self.tok() == Tok::Op('/') {
                    self.bump();
                    let Tok::Num(n) = *self.tok() else {
                        return Err(self.syntax_here());
                    };
                    self.bump();
                    IdVal::Hid6(s, n)
                } else {
                    IdVal::Hid6(s, 128)
                }
            }
            Tok::Eid(s) => {
                self.bump();
                IdVal::Eid(s)
            }
            Tok::Aid(s) => {
                return Err(unsupported(
                    col,
                    format!(
                        "ARCnet address {s}: {}",
                        unsupported_msg("ARCnet", "ARCnet")
                    ),
                ));
            }
            _ => return Err(self.syntax_here()),
        };
        self.mk_id(col, ctx, val)
    }

    fn mk_id(&self, col: usize, ctx: Q, val: IdVal) -> PResult<Ast> {
        match ctx {
            Some(q) => Ok(Ast::Prim(col, Prim::Id(q, val))),
            None => Err(syntax(
                col,
                format!("{NEEDS_QUAL} (host, net, port ...) here"),
            )),
        }
    }

    /// pnum: NUM | '(' pnum ')'
    fn pnum(&mut self) -> PResult<u32> {
        match *self.tok() {
            Tok::Num(n) => {
                self.bump();
                Ok(n)
            }
            Tok::Op('(') => {
                self.bump();
                self.enter()?;
                let n = self.pnum()?;
                self.leave();
                self.expect_op(')')?;
                Ok(n)
            }
            _ => Err(self.syntax_here()),
        }
    }

    /// arth relop arth
    fn relation(&mut self, col: usize) -> PResult<(Ast, Q)> {
        let a = self.arth(0)?;
        let op = match self.tok() {
            Tok::Op('>') => RelOp::Gt,
            Tok::Geq => RelOp::Ge,
            Tok::Op('=') => RelOp::Eq,
            Tok::Leq => RelOp::Le,
            Tok::Op('<') => RelOp::Lt,
            Tok::Neq => RelOp::Ne,
            _ => return Err(self.syntax_here()),
        };
        self.bump();
        let b = self.arth(0)?;
        Ok((Ast::Prim(col, Prim::Rel(op, a, b)), None))
    }

    /// Arithmetic with binding powers (see the module doc for `%` and `^`).
    fn arth(&mut self, min_bp: u8) -> PResult<Arth> {
        self.enter()?;
        let r = self.arth_inner(min_bp);
        self.leave();
        r
    }

    fn arth_inner(&mut self, min_bp: u8) -> PResult<Arth> {
        let col = self.col();
        let mut lhs = match self.tok().clone() {
            Tok::Num(n) => {
                self.bump();
                Arth::Num(n)
            }
            Tok::Kw("len") => {
                self.bump();
                Arth::Len
            }
            Tok::Op('-') => {
                self.bump();
                Arth::Neg(Box::new(self.arth(11)?))
            }
            Tok::Op('(') => {
                self.bump();
                let a = self.arth(0)?;
                self.expect_op(')')?;
                a
            }
            Tok::Kw(kw) if *self.tok_at(self.pos + 1) == Tok::Op('[') => {
                let Some(proto) = pname(kw) else {
                    return Err(match unsupported_kw(kw) {
                        Some(name) => unsupported(col, unsupported_msg(&self.text(), name)),
                        None => self.syntax_here(),
                    });
                };
                if matches!(proto, Proto::Ah | Proto::Esp) {
                    return Err(syntax(
                        col,
                        format!("{}[...]: unsupported index operation", proto.name()),
                    ));
                }
                self.bump();
                self.bump();
                let index = self.arth(0)?;
                let mut size = 1;
                if *self.tok() == Tok::Op(':') {
                    self.bump();
                    let scol = self.col();
                    let Tok::Num(n) = *self.tok() else {
                        return Err(self.syntax_here());
                    };
                    if !matches!(n, 1 | 2 | 4) {
                        return Err(syntax(scol, "data size must be 1, 2, or 4"));
                    }
                    size = n;
                    self.bump();
                }
                self.expect_op(']')?;
                Arth::Load {
                    proto,
                    index: Box::new(index),
                    size,
                    col,
                }
            }
            _ => return Err(self.syntax_here()),
        };
        loop {
            let ocol = self.col();
            let (op, lbp, rbp) = match self.tok() {
                Tok::Op('|') => (ArOp::Or, 1, 2),
                Tok::Op('&') => (ArOp::And, 3, 4),
                Tok::Lsh => (ArOp::Lsh, 5, 6),
                Tok::Rsh => (ArOp::Rsh, 5, 6),
                Tok::Op('+') => (ArOp::Add, 7, 8),
                Tok::Op('-') => (ArOp::Sub, 7, 8),
                Tok::Op('*') => (ArOp::Mul, 9, 10),
                Tok::Op('/') => (ArOp::Div, 9, 10),
                Tok::Op('%') => (ArOp::Mod, 100, 0),
                Tok::Op('^') => (ArOp::Xor, 100, 0),
                _ => break,
            };
            if lbp < min_bp {
                break;
            }
            self.bump();
            let rhs = self.arth(rbp)?;
            lhs = Arth::Bin(op, Box::new(lhs), Box::new(rhs), ocol);
        }
        Ok(lhs)
    }
}

/// Keywords that start (or continue) a `head`.
fn is_head_kw(k: &str) -> bool {
    matches!(
        k,
        "src" | "dst" | "host" | "net" | "port" | "portrange" | "proto" | "protochain" | "gateway"
    )
}

/// Unsupported keywords that are qualifiers (so `ip addr2 ...` names `addr2`).
fn is_qual_kw(k: &str) -> bool {
    matches!(
        k,
        "gateway"
            | "addr1"
            | "addr2"
            | "addr3"
            | "addr4"
            | "ra"
            | "ta"
            | "type"
            | "subtype"
            | "dir"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::tokenize;

    fn p(s: &str) -> PResult<Option<Ast>> {
        parse(&tokenize(s)?)
    }

    fn q(proto: Proto, dir: Dir, addr: AddrQ) -> Qual {
        Qual { proto, dir, addr }
    }

    #[test]
    fn inheritance() {
        let a = p("host 1.2.3.4 or 5.6.7.8").ok().flatten();
        let h = q(Proto::Default, Dir::Default, AddrQ::Host);
        assert_eq!(
            a,
            Some(Ast::Or(
                Box::new(Ast::Prim(1, Prim::Id(h, IdVal::Hid("1.2.3.4".into())))),
                Box::new(Ast::Prim(17, Prim::Id(h, IdVal::Hid("5.6.7.8".into()))))
            ))
        );
        let a = p("tcp port 53 and not 80").ok().flatten();
        let pq = q(Proto::Tcp, Dir::Default, AddrQ::Port);
        assert_eq!(
            a,
            Some(Ast::And(
                Box::new(Ast::Prim(1, Prim::Id(pq, IdVal::Num(53)))),
                Box::new(Ast::Not(Box::new(Ast::Prim(
                    21,
                    Prim::Id(pq, IdVal::Num(80))
                ))))
            ))
        );
    }

    #[test]
    fn and_or_same_precedence_left_assoc() {
        let a = p("ip or arp and tcp").ok().flatten();
        assert!(matches!(a, Some(Ast::And(l, _)) if matches!(*l, Ast::Or(_, _))));
    }

    #[test]
    fn arithmetic_precedence_like_bison() {
        let a = p("ether[0] % 2 * 3 == 0").ok().flatten();
        let Some(Ast::Prim(_, Prim::Rel(_, Arth::Bin(ArOp::Mod, _, r, _), _))) = a else {
            panic!("{a:?}")
        };
        assert!(matches!(*r, Arth::Bin(ArOp::Mul, _, _, _)));
        let a = p("ether[0] + 2 * 3 == 0").ok().flatten();
        let Some(Ast::Prim(_, Prim::Rel(_, Arth::Bin(ArOp::Add, _, r, _), _))) = a else {
            panic!("{a:?}")
        };
        assert!(matches!(*r, Arth::Bin(ArOp::Mul, _, _, _)));
    }

    #[test]
    fn syntax_errors_have_columns() {
        let e = p("tcp and 80").err();
        assert_eq!(e.map(|e| (e.column, e.kind)), Some((9, ErrorKind::Syntax)));
        let e = p("src proto 1").err();
        assert_eq!(e.map(|e| e.column), Some(5));
        let e = p("ip and decnet").err();
        assert_eq!(
            e.as_ref().map(|e| (e.column, e.kind)),
            Some((8, ErrorKind::Unsupported))
        );
        assert!(e.is_some_and(|e| e.message.contains("decnet")));
        let e = p("port 80 and (").err();
        assert!(e.is_some());
        let deep = "(".repeat(5000);
        assert!(p(&deep).is_err());
        let deep = format!("{}ip{}", "(ip and ".repeat(300), ")".repeat(300));
        assert!(p(&deep).is_err());
    }

    #[test]
    fn paren_values_and_groups() {
        assert!(p("host 1.2.3.4 and (5.6.7.8 or 9.9.9.9)").is_ok());
        assert!(p("port (80)").is_ok());
        assert!(p("(tcp[0] + 1) > 2").is_ok());
        assert!(p("(tcp or udp) and port 53").is_ok());
        assert!(p("vlan (100) and ip").is_ok());
        assert!(p("").ok().flatten().is_none());
    }
}
