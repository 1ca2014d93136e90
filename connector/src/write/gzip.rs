//! gzip of request bodies: ISA-L's igzip at level 1, the one-shot ("stateless") way.
//!
//! Line protocol compresses well even at the fastest levels (about 5:1), and compression is the
//! largest cost of a request: with libdeflate at level 1 it took about a sixth of the sink's CPU
//! draining a backlog. igzip's hand-written x86-64 and AArch64 kernels do the same job in half
//! the time for bodies about 4 % larger (README, Dependencies). The batch is whole in memory, so
//! the one-shot call compresses it without a streaming encoder's copies.
//!
//! The FFI is confined to [`Igzip`] (its zeroed state in `new`, the one-shot call in
//! `compress`): the stream state (82 KB) and level-1 hash buffer are allocated once per thread
//! and reused, as is the output buffer; a fresh zero-filled buffer per batch cost more than
//! copying the compressed body (a fifth of the input) out.

use std::cell::RefCell;

use isal_sys::igzip_lib as isal;

/// The gzip body of `lines`, on this thread's kept compressor.
pub fn gzip(lines: &[u8]) -> Result<Vec<u8>, GzipError> {
    KEPT.with(|kept| match kept.try_borrow_mut() {
        Ok(mut kept) => kept.get_or_insert_with(Igzip::new).compress(lines),
        // Only if gzip were ever called from inside itself.
        Err(_) => Igzip::new().compress(lines),
    })
}

/// Largest output buffer a thread keeps between batches (a batch of the default
/// `batch.max_bytes`, 1 MiB, needs a little more than that); a bigger batch gets its own.
const KEPT_OUTPUT_MAX: usize = 4 << 20;

thread_local! {
    static KEPT: RefCell<Option<Igzip>> = const { RefCell::new(None) };
}

/// The request body could not be compressed.
#[derive(Debug, thiserror::Error)]
pub enum GzipError {
    /// gzip's trailer holds the input size in 32 bits, and igzip takes no more in one call.
    #[error(
        "a batch of {bytes} bytes is too large to gzip in one request (batch.max_bytes bounds it)"
    )]
    TooLarge {
        /// The batch's size.
        bytes: usize,
    },
    /// igzip refused, which the output bound and the settings used here rule out.
    #[error("igzip could not compress {bytes} bytes (error {code})")]
    Failed {
        /// The batch's size.
        bytes: usize,
        /// igzip's return code.
        code: i32,
    },
}

/// One thread's igzip state and buffers.
struct Igzip {
    /// `isal_zstream` holds its whole internal state inline (82 KB): boxed, once.
    stream: Box<isal::isal_zstream>,
    /// Level 1's hash table, of igzip's default size for it.
    level_buf: Vec<u8>,
    /// The kept output buffer (up to [`KEPT_OUTPUT_MAX`]).
    output: Vec<u8>,
}

impl Igzip {
    fn new() -> Self {
        // SAFETY: `isal_zstream` is a C struct of integers, arrays of integers and raw pointers,
        // for which all-zero bytes are a valid value; `isal_deflate_stateless_init` then sets
        // what igzip reads before a compression. (Built on the stack and moved: `new_zeroed`
        // needs a newer Rust than the crate's minimum, and 82 KB fits a thread's stack.)
        let stream = Box::new(unsafe { std::mem::zeroed::<isal::isal_zstream>() });
        Self {
            stream,
            level_buf: vec![0; isal::ISAL_DEF_LVL1_DEFAULT as usize],
            output: Vec::new(),
        }
    }

    /// gzip of `input`, one deflate stream with a gzip header and trailer.
    fn compress(&mut self, input: &[u8]) -> Result<Vec<u8>, GzipError> {
        let bound = output_bound(input.len());
        // igzip takes both sizes as 32-bit fields.
        let (Ok(avail_in), Ok(avail_out)) = (u32::try_from(input.len()), u32::try_from(bound))
        else {
            return Err(GzipError::TooLarge { bytes: input.len() });
        };
        let mut own;
        let output = if bound <= KEPT_OUTPUT_MAX {
            if self.output.len() < bound {
                self.output.resize(bound, 0);
            }
            &mut self.output[..bound]
        } else {
            own = vec![0; bound];
            &mut own[..]
        };
        let stream = &mut *self.stream;
        // SAFETY: the stream was zero-initialised in `new` and is re-initialised here. igzip
        // reads `avail_in` bytes from `next_in` (the input slice), writes at most `avail_out`
        // bytes from `next_out` (the output slice, `bound` long) and uses `level_buf_size` bytes
        // of `level_buf` (our buffer); it only reads through `next_in` although the field is
        // `*mut`. All three outlive the call, and nothing else touches them meanwhile. No pointer
        // is kept past it: the next call sets them all again.
        let code = unsafe {
            isal::isal_deflate_stateless_init(stream);
            stream.level = 1;
            stream.level_buf = self.level_buf.as_mut_ptr();
            stream.level_buf_size = self.level_buf.len() as u32;
            stream.gzip_flag = isal::IGZIP_GZIP as u16;
            stream.end_of_stream = 1;
            stream.flush = isal::NO_FLUSH as u16;
            stream.next_in = input.as_ptr().cast_mut();
            stream.avail_in = avail_in;
            stream.next_out = output.as_mut_ptr();
            stream.avail_out = avail_out;
            isal::isal_deflate_stateless(stream)
        };
        if code != isal::COMP_OK as i32 || stream.avail_in != 0 {
            return Err(GzipError::Failed {
                bytes: input.len(),
                code,
            });
        }
        let written = stream.total_out as usize;
        Ok(output[..written].to_vec())
    }
}

/// igzip's own bound for a one-shot gzip of `len` bytes: when compressing does not fit, it
/// falls back to stored blocks (5 bytes of header per 65,535 bytes, one block at least), with
/// the 10-byte gzip header and 8-byte trailer around them.
fn output_bound(len: usize) -> usize {
    len + 5 * (len / 65_535 + 1) + 18
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn decoded(compressed: &[u8]) -> Vec<u8> {
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(compressed)
            .read_to_end(&mut decoded)
            .unwrap();
        decoded
    }

    #[test]
    fn gzip_round_trips() {
        let lines = b"generator,generatorID=g fuel=1 1\n".repeat(100);
        let compressed = gzip(&lines).unwrap();
        assert_eq!(decoded(&compressed), lines);
        assert!(compressed.len() < lines.len() / 5);
    }

    /// One thread's kept buffer serves batches of any size in any order: a small batch after a
    /// large one carries none of its bytes, and a batch past the kept buffer's cap has its own.
    #[test]
    fn gzip_bodies_are_each_their_own_batch_whatever_came_before() {
        let line = |n: usize| format!("generator,generatorID=g{n} fuel={n} {n}\n");
        let batch = |lines: usize| (0..lines).map(line).collect::<String>().into_bytes();
        // A batch of random-ish digits does not compress to nothing, so it overflows the cap.
        let past_cap = batch(KEPT_OUTPUT_MAX / 20);
        assert!(past_cap.len() > KEPT_OUTPUT_MAX);
        for lines in [
            batch(5000),
            batch(3),
            Vec::new(),
            past_cap,
            batch(1),
            batch(5000),
        ] {
            let body = gzip(&lines).unwrap();
            assert_eq!(decoded(&body), lines);
            // The body ends with its own gzip trailer (the input's size), not with bytes a
            // decoder would skip.
            let trailer = (lines.len() as u32).to_le_bytes();
            assert_eq!(body[body.len() - 4..], trailer);
        }
    }

    /// Bytes that do not compress take igzip's stored-block fallback, which must fit the bound
    /// exactly as it is computed, on either side of a stored block's 65,535-byte limit.
    #[test]
    fn incompressible_batches_fit_the_bound() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut noise = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    // xorshift: no compressible structure at deflate's scale.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect()
        };
        for len in [1, 100, 65_534, 65_535, 65_536, 131_070, 131_071, 300_000] {
            let input = noise(len);
            let body = gzip(&input).unwrap();
            assert!(body.len() <= output_bound(len), "{len}: {}", body.len());
            assert_eq!(decoded(&body), input, "{len}");
        }
    }

    /// Bodies compressed on several threads at once (the runtime's workers each keep their own
    /// state) are each intact.
    #[test]
    fn threads_compress_independently() {
        let handles: Vec<_> = (0..4)
            .map(|thread| {
                std::thread::spawn(move || {
                    for round in 0..20 {
                        let lines = format!("m,t=thread{thread} f={round} {round}\n")
                            .repeat(1000 + round * 37)
                            .into_bytes();
                        assert_eq!(decoded(&gzip(&lines).unwrap()), lines);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    }
}
