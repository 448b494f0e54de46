//! The writer's disk engine: io_uring writes (registered buffers and a fixed file when the
//! kernel allows each), else blocking `pwrite`. Segment files are opened with `O_DIRECT` when
//! the filesystem supports it (tmpfs does not: then buffered, logged once).
//!
//! All `unsafe` of the crate is here: handing buffer addresses to the kernel. The buffers are
//! anonymous mappings owned by the pool for the whole life of the engine, and a buffer handed
//! to a write is not touched until its completion has been reaped.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use io_uring::{opcode, types, IoUring};

use crate::staging::Buf;

/// Which engine runs, and with which kernel features (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineInfo {
    /// io_uring in use (else blocking pwrite).
    pub uring: bool,
    /// Staging buffers registered with io_uring.
    pub registered_buffers: bool,
    /// Segment file registered with io_uring.
    pub fixed_file: bool,
}

/// A finished write.
#[derive(Debug)]
pub struct Done {
    /// The buffer (to return to the pool).
    pub buf: Buf,
    /// File offset written.
    pub off: u64,
    /// Bytes asked.
    pub len: usize,
    /// Bytes written, or the error.
    pub res: io::Result<usize>,
}

/// Opens a segment file for writing, `O_DIRECT` if possible. Returns the file and whether it
/// is direct.
pub fn open_segment(path: &Path, direct: bool) -> io::Result<(File, bool)> {
    if direct {
        match OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(f) => return Ok((f, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // The file may have been created before O_DIRECT was refused.
                let _ = std::fs::remove_file(path);
            }
            Err(e) => return Err(e),
        }
    }
    let f = OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .open(path)?;
    Ok((f, false))
}

/// The engine.
pub enum Engine {
    /// io_uring.
    Uring {
        /// The ring.
        ring: Box<IoUring>,
        /// Buffers in flight, by id.
        inflight: Vec<Option<(Buf, u64, usize)>>,
        /// Number in flight.
        n: usize,
        /// Features in use.
        info: EngineInfo,
        /// Raw fd of the current file (when not fixed).
        fd: i32,
    },
    /// Blocking writes; completions are queued here.
    Blocking {
        /// Completed writes not yet reaped.
        done: Vec<Done>,
        /// The current file.
        file: Option<File>,
    },
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({:?})", self.info())
    }
}

impl Engine {
    /// An io_uring engine for the pool `bufs` (registered when the kernel allows), or the
    /// blocking engine when io_uring is refused (or `uring` is false).
    pub fn new(bufs: &[Buf], uring: bool) -> Engine {
        if uring {
            match IoUring::new((bufs.len() as u32).next_power_of_two().max(8)) {
                Ok(ring) => {
                    let iov: Vec<libc::iovec> = bufs
                        .iter()
                        .map(|b| libc::iovec {
                            iov_base: b.as_ptr() as *mut libc::c_void,
                            iov_len: b.capacity(),
                        })
                        .collect();
                    // SAFETY: each iovec describes a live anonymous mapping owned by a pool
                    // buffer; buffers are never freed while the ring exists (the pool outlives
                    // the engine: both are owned by the writer thread, the engine is dropped
                    // first), and the kernel writes from them only for submitted writes.
                    let registered = unsafe { ring.submitter().register_buffers(&iov) }.is_ok();
                    if !registered {
                        tracing::info!("trace window: io_uring buffer registration refused (RLIMIT_MEMLOCK?); plain writes");
                    }
                    let fixed = ring.submitter().register_files_sparse(1).is_ok();
                    let mut inflight = Vec::new();
                    inflight.resize_with(bufs.len(), || None);
                    return Engine::Uring {
                        ring: Box::new(ring),
                        inflight,
                        n: 0,
                        info: EngineInfo {
                            uring: true,
                            registered_buffers: registered,
                            fixed_file: fixed,
                        },
                        fd: -1,
                    };
                }
                Err(e) => {
                    tracing::warn!(
                        "trace window: io_uring unavailable ({e}); blocking O_DIRECT writes"
                    );
                }
            }
        }
        Engine::Blocking {
            done: Vec::new(),
            file: None,
        }
    }

    /// Features in use.
    pub fn info(&self) -> EngineInfo {
        match self {
            Engine::Uring { info, .. } => *info,
            Engine::Blocking { .. } => EngineInfo::default(),
        }
    }

    /// Writes in flight.
    pub fn inflight(&self) -> usize {
        match self {
            Engine::Uring { n, .. } => *n,
            Engine::Blocking { done, .. } => done.len(),
        }
    }

    /// Makes `file` the target of the next writes (no write may be in flight).
    pub fn set_file(&mut self, file: &File) -> io::Result<()> {
        match self {
            Engine::Uring { ring, info, fd, .. } => {
                *fd = file.as_raw_fd();
                if info.fixed_file {
                    ring.submitter()
                        .register_files_update(0, &[file.as_raw_fd()])?;
                }
                Ok(())
            }
            Engine::Blocking { file: f, .. } => {
                *f = Some(file.try_clone()?);
                Ok(())
            }
        }
    }

    /// Starts writing the first `len` bytes of `buf` at `off` (`len` ≤ capacity).
    pub fn submit(&mut self, buf: Buf, off: u64, len: usize) {
        match self {
            Engine::Uring {
                ring,
                inflight,
                n,
                info,
                fd,
            } => {
                let id = buf.id;
                let ptr = buf.as_ptr();
                let l = len.min(buf.capacity()) as u32;
                let e = match (info.registered_buffers, info.fixed_file) {
                    (true, true) => opcode::WriteFixed::new(types::Fixed(0), ptr, l, id)
                        .offset(off)
                        .build(),
                    (true, false) => opcode::WriteFixed::new(types::Fd(*fd), ptr, l, id)
                        .offset(off)
                        .build(),
                    (false, true) => opcode::Write::new(types::Fixed(0), ptr, l)
                        .offset(off)
                        .build(),
                    (false, false) => opcode::Write::new(types::Fd(*fd), ptr, l)
                        .offset(off)
                        .build(),
                }
                .user_data(u64::from(id));
                if let Some(slot) = inflight.get_mut(usize::from(id)) {
                    *slot = Some((buf, off, len));
                    *n += 1;
                }
                // The ring has one entry per pool buffer, so it is never full; if it were,
                // submit first and retry once.
                // SAFETY: the buffer's memory stays valid and untouched until its completion
                // is reaped (it sits in `inflight`), and the file stays open meanwhile (the
                // writer closes a segment only after `wait_all`).
                let pushed = unsafe { ring.submission().push(&e) }.is_ok()
                    || (ring.submit().is_ok()
                        // SAFETY: as above.
                        && unsafe { ring.submission().push(&e) }.is_ok());
                if pushed {
                    let _ = ring.submit();
                }
            }
            Engine::Blocking { done, file } => {
                let res = match (file.as_ref(), buf_bytes(&buf, len)) {
                    (Some(f), Some(bytes)) => f.write_all_at(bytes, off).map(|()| len),
                    _ => Err(io::Error::other("no segment file")),
                };
                done.push(Done { buf, off, len, res });
            }
        }
    }

    /// [`Engine::submit`], then `f` over the buffer's bytes while the write runs (the
    /// buffer is only read, by both).
    pub fn submit_with(&mut self, buf: Buf, off: u64, len: usize, f: impl FnOnce(&[u8])) {
        let id = usize::from(buf.id);
        match self {
            Engine::Uring { .. } => {
                self.submit(buf, off, len);
                if let Engine::Uring { inflight, .. } = self {
                    // Always found: completions are only reaped explicitly.
                    if let Some(Some((b, _, _))) = inflight.get(id) {
                        f(b.raw());
                    }
                }
            }
            Engine::Blocking { .. } => {
                f(buf.raw());
                self.submit(buf, off, len);
            }
        }
    }

    /// Completed writes; waits for at least `min` (bounded by those in flight).
    pub fn reap(&mut self, min: usize, out: &mut Vec<Done>) {
        match self {
            Engine::Uring {
                ring, inflight, n, ..
            } => {
                let want = min.min(*n);
                if want > 0 {
                    let _ = ring.submit_and_wait(want);
                }
                for cqe in ring.completion() {
                    let id = cqe.user_data() as usize;
                    let r = cqe.result();
                    if let Some((buf, off, len)) = inflight.get_mut(id).and_then(Option::take) {
                        *n -= 1;
                        let res = if r < 0 {
                            Err(io::Error::from_raw_os_error(-r))
                        } else {
                            Ok(r as usize)
                        };
                        out.push(Done { buf, off, len, res });
                    }
                }
            }
            Engine::Blocking { done, .. } => out.append(done),
        }
    }
}

/// The first `len` bytes of a buffer.
fn buf_bytes(b: &Buf, len: usize) -> Option<&[u8]> {
    let all = b.content_upto(len);
    (all.len() == len).then_some(all)
}

impl Buf {
    /// The first `len` bytes (sealed content included).
    pub fn content_upto(&self, len: usize) -> &[u8] {
        self.raw().get(..len).unwrap_or(&[])
    }
}
