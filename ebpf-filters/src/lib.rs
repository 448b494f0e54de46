//! tcpdump's pcap-filter language for CoMo-rs: parser, IR and exact userspace evaluator.
//!
//! [`compile`] turns an expression (libpcap 1.10.3 syntax and semantics, for one link type)
//! into a [`Filter`]; [`Filter::matches`] decides a packet exactly as libpcap's BPF code would
//! (same offsets, same checks, same "a load past the captured bytes rejects the packet"),
//! without allocating. [`Filter::ir`] exposes the [`ir::Ir`] tree the kernel-table compiler
//! will consume.
//!
//! Pipeline: [`lexer`] (flex-like tokens) → [`parser`] (grammar.y's rules, qualifier
//! inheritance) → [`ast`] → [`lower`] (gencode.c's semantics, offsets shifted by
//! `vlan`/`mpls`/`pppoes`/`geneve` in source order) → [`ir`] → [`eval`] (a jump program
//! over specialized tests; register-free programs also run as native code, compiled with
//! Cranelift when the filter is compiled, or as threaded code where no JIT is available; both
//! fall back to the jump program on any out-of-bounds load on the packet's path). [`kernel`] compiles the filters of up to 64 rules into the XDP
//! program's classification tables (and holds the userspace reference of that program).
//!
//! Supported: `host/net/port/portrange` with `src/dst/src or dst/src and dst` and the
//! `ip/ip6/arp/rarp/tcp/udp/sctp` qualifiers; `net A/len`, `net A mask M`, partial nets;
//! IPv6 addresses and prefixes; `ether host/src/dst/proto/broadcast/multicast`; `broadcast`,
//! `multicast`; protocol names `ip ip6 arp rarp tcp udp icmp icmp6 sctp igmp pim vrrp carp esp
//! ah`; `proto`/`ip proto`/`ip6 proto`/`ether proto` with numbers or names (built-in tables,
//! see [`names`]); `ip6 protochain`; `geneve [vni]`; `ip/ip6 multicast`; `vlan [id]`,
//! `mpls [label]`, `pppoes [id]`; `len`, `greater`, `less`; relations over `proto[expr:size]`
//! with `+ - * / % & | ^ << >>` and unary minus; named offsets and values (`tcpflags`,
//! `tcp-syn`, `icmp-echo` ...); `and/or/not/&&/||/!` and parentheses.
//! Everything else (DECnet, ATM, SS7, 802.11 management, `llc`, ISO, IPX, AppleTalk,
//! `inbound`, `gateway`, names needing DNS or /etc/ethers, `ip broadcast` ...) is rejected with
//! [`ErrorKind::Unsupported`] naming the construct.
//!
//! Link types: Ethernet, Linux SLL/SLL2, raw IP (RAW, IPV4, IPV6), NULL/LOOP, PPP, Cisco HDLC,
//! 802.11 and 802.11+radiotap. On NULL the address family is accepted in either byte order
//! (libpcap uses the file's byte order, which a [`Packet`] does not carry).
//!
//! # Fidelity to libpcap 1.10.3 (what tcpdump does)
//!
//! * Code generation follows `gencode.c`: same checks, same order, same offsets, same errors
//!   (including "expression rejects all packets" for programs that can only reject, e.g. `arp`
//!   on raw IP or `ip6 and igmp`). Contradictions are found for equality tests of one field
//!   (link type, IP protocol), which covers the corpus; libpcap's optimizer may find others.
//! * BPF rejects a packet on an out-of-bounds load anywhere in the program; libpcap's optimizer
//!   however skips loads whose result no longer matters. [`eval`] reproduces both (see its
//!   docs); it is checked packet by packet against tcpdump at every captured length.
//! * Arithmetic keeps only its left operand's protocol checks, as libpcap's `gen_arth` does:
//!   `len - tcp[0] != 0` has no `tcp` check (the right operand's load runs unguarded), while a
//!   relation (`gen_relation`) checks both sides and a load keeps its index's checks.
//! * Known deviation, truncated packets only: which loads libpcap's *optimized* program
//!   executes (and so whether a load past the captured bytes rejects the packet) is decided by
//!   its optimizer's value numbering and jump threading on the block graph; the three-valued
//!   pass of [`eval`] approximates it and differs for some random expressions (about 40 of
//!   8000 in the random differential test, seeds 0-3), never for packets whose loads all fit.
//! * `byte N & V` / `byte N | V`: libpcap 1.10 forgets the load and tests its accumulator (0 when
//!   the primitive comes first); reproduced with 0.
//! * `protochain` follows libpcap's loop, including its AH length arithmetic; a walk longer than
//!   4096 steps (a hostile packet that would make BPF spin) rejects the packet.
//! * Limits: 4096 tokens, 256 characters per word, parentheses/`not` nested 200 deep,
//!   and/or/not nested [`MAX_IR_DEPTH`] deep after flattening.

pub mod ast;
pub mod eval;
pub mod ir;
mod jit;
pub mod kernel;
pub mod lexer;
pub mod lower;
pub mod names;
mod opt;
pub mod parser;
mod threaded;

use como_packet::{LinkType, Packet};

/// Deepest and/or/not nesting accepted after flattening (alternating `a and b or c and d ...`
/// nests one level per operator change); keeps evaluation recursion shallow.
pub const MAX_IR_DEPTH: usize = 256;

/// What kind of failure a [`FilterError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not a valid pcap-filter expression (tcpdump rejects it too).
    Syntax,
    /// Valid for tcpdump, but outside the set this compiler supports.
    Unsupported,
    /// Not valid for the packets' link type (or the link type is not supported at all).
    LinkType,
}

/// A filter that does not compile: what is wrong and at which column (1-based, in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct FilterError {
    /// 1-based column of the offending construct.
    pub column: usize,
    /// What is wrong, naming the construct.
    pub message: String,
    /// Syntax, unsupported construct, or link-type problem.
    pub kind: ErrorKind,
}

/// A compiled filter for one link type.
#[derive(Debug, Clone)]
pub struct Filter {
    ir: ir::Ir,
    prog: eval::Program,
}

/// Compiles `expr` (pcap-filter syntax; empty or blank matches every packet) for packets of
/// `link`.
pub fn compile(expr: &str, link: LinkType) -> Result<Filter, FilterError> {
    let tokens = lexer::tokenize(expr)?;
    let ast = parser::parse(&tokens)?;
    let Some(l) = ir::Link::from_link_type(link) else {
        if ast.is_none() {
            let ir = ir::Ir {
                link: ir::Link::Ethernet,
                prologue: None,
                root: ir::Node::True,
                regs: 0,
                optimized: true,
            };
            let prog = eval::Program::new(&ir.root, ir.prologue.is_none());
            return Ok(Filter { ir, prog });
        }
        return Err(FilterError {
            column: 1,
            message: format!(
                "link type {} is not supported by the filter compiler",
                link.to_linktype()
            ),
            kind: ErrorKind::LinkType,
        });
    };
    let ir = match ast {
        None => ir::Ir {
            link: l,
            prologue: None,
            root: ir::Node::True,
            regs: 0,
            optimized: true,
        },
        Some(ast) => {
            let mut ir = lower::lower(&ast, l)?;
            let depth = ir.root.depth();
            if depth > MAX_IR_DEPTH {
                return Err(FilterError {
                    column: 1,
                    message: format!("expression too complex: and/or/not nested {depth} deep (at most {MAX_IR_DEPTH})"),
                    kind: ErrorKind::Syntax,
                });
            }
            if ir.optimized {
                ir.root = opt::simplify(ir.root);
            }
            if ir.optimized && ir.root == ir::Node::False {
                // libpcap refuses a program that can only reject.
                let on_ethernet =
                    lower::lower(&ast, ir::Link::Ethernet).map(|i| opt::simplify(i.root));
                let kind = match on_ethernet {
                    Ok(ir::Node::False) | Err(_) => ErrorKind::Syntax,
                    Ok(_) => ErrorKind::LinkType,
                };
                return Err(FilterError {
                    column: 1,
                    message: format!(
                        "expression rejects all packets (on link type {})",
                        link.name()
                    ),
                    kind,
                });
            }
            ir
        }
    };
    let prog = eval::Program::new(&ir.root, ir.prologue.is_none());
    Ok(Filter { ir, prog })
}

impl Filter {
    /// Whether `pkt` matches, exactly as libpcap would decide (lengths for `len`, `greater`
    /// and `less` are the wire length; loads past the captured bytes reject the packet).
    #[inline]
    pub fn matches(&self, pkt: &Packet<'_>) -> bool {
        eval::run(&self.ir, &self.prog, pkt.data, pkt.wire_len)
    }

    /// The verdict of the exact path alone: the jump program and its three-valued pass, without
    /// the threaded or native code that [`Filter::matches`] runs first. They must agree; this is
    /// for differential tests and fuzzing.
    #[doc(hidden)]
    pub fn matches_exact(&self, pkt: &Packet<'_>) -> bool {
        eval::run_slow(&self.ir, &self.prog, pkt.data, pkt.wire_len)
    }

    /// The compiled IR.
    pub fn ir(&self) -> &ir::Ir {
        &self.ir
    }
}
