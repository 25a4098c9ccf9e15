//! Compressed layers and archives: which compression a blob uses (from
//! its first bytes, as engines do: a descriptor's media type can lie or be
//! missing), and decompressing it once into an anonymous temporary file
//! under the expansion limits, hashing the output on the way (the diff_id).
use std::{
    io::{self, BufRead, BufReader, Read},
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use ruzstd::decoding::{
    BlockDecodingStrategy, FrameDecoder,
    errors::{FrameDecoderError, ReadFrameHeaderError},
};
use sha2::{Digest as _, Sha256};

use super::archive::{Region, hex};
use super::error::SourceError;

/// How a blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar: its own uncompressed form.
    None,
    Gzip,
    /// Zstandard, also zstd:chunked (its table of contents sits in
    /// skippable frames, which a plain reader passes over).
    Zstd,
    /// `docker save app | xz` (docker load reads it), legacy layers.
    Xz,
    Bzip2,
}

/// The most memory an xz block's dictionary may ask for: `xz -9e` uses
/// 64 MiB; the format allows 4 GiB, which a hostile stream would claim.
const XZ_MEM_LIMIT_KB: u32 = 512 << 10;

impl Compression {
    /// The compression of a blob starting with `magic` (its first 512
    /// bytes, or all of a shorter one).
    /// A tar header is recognised first, so a plain layer whose first
    /// member is named, say, `BZh...` is not taken for bzip2.
    pub fn detect(magic: &[u8]) -> Compression {
        // Every tar header (ustar, GNU, PAX) carries "ustar" at offset 257.
        if magic.get(257..262) == Some(b"ustar".as_slice()) {
            Compression::None
        } else if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if magic.starts_with(b"BZh")
            && magic.get(3).is_some_and(|b| (b'1'..=b'9').contains(b))
        {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
        }
    }

    /// A reader of the decompressed stream. Concatenated gzip members, zstd
    /// frames, xz streams and bzip2 streams are all read, as the CLIs do.
    pub fn reader<'a, R: Read + 'a>(self, r: R) -> Box<dyn Read + 'a> {
        match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(ZstdFrames::new(r)),
            Compression::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(
                io::BufReader::with_capacity(1 << 16, r),
                true,
                XZ_MEM_LIMIT_KB,
            )),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
        }
    }
}

/// Every frame of a zstd stream in turn. ruzstd decodes one frame at a
/// time and leaves skippable frames to its caller.
struct ZstdFrames<R: Read> {
    src: BufReader<R>,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: Read> ZstdFrames<R> {
    fn new(r: R) -> Self {
        ZstdFrames {
            src: BufReader::with_capacity(1 << 16, r),
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }

    /// Starts the next frame; false at a clean end of the stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.src.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.reset(&mut self.src) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let want = u64::from(length);
                    let got = io::copy(&mut (&mut self.src).take(want), &mut io::sink())?;
                    if got != want {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() {
                // The frame's optional checksum: the digests catch a
                // tampered blob, this catches a corrupt one by name.
                if let (Some(stored), Some(computed)) = (
                    self.decoder.get_checksum_from_data(),
                    self.decoder.get_calculated_checksum(),
                ) && stored != computed
                {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a frame's checksum does not match its content",
                    ));
                }
                self.in_frame = false;
                continue;
            }
            self.decoder
                .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBytes(1 << 20))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }
}

/// How far a compressed stream may expand: a few megabytes of gzip can
/// stand for terabytes of zeros, all of which would be written to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes per layer (or compressed archive).
    pub max_bytes: u64,
    /// Decompressed bytes per compressed byte ...
    pub max_ratio: u64,
    /// ... checked once this much has come out, so a small, highly
    /// compressible layer (a file of zeros) still passes.
    pub ratio_after: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_LAYER_BYTES,
            max_ratio: DEFAULT_MAX_LAYER_RATIO,
            ratio_after: 1 << 30,
        }
    }
}

pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 << 30;
pub const DEFAULT_MAX_LAYER_RATIO: u64 = 200;

static LIMITS: std::sync::OnceLock<Limits> = std::sync::OnceLock::new();

/// Sets the limits for this process (from the command line); the first
/// call wins.
pub fn set_limits(l: Limits) {
    let _ = LIMITS.set(l);
}

pub fn limits() -> Limits {
    LIMITS.get().copied().unwrap_or_default()
}

/// Bytes free to an unprivileged writer in the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Decompresses a `region` compressed as `how` once into an anonymous
/// temporary file, so its contents can then be read in place, under this
/// process's [`limits`]. Returns the uncompressed data and its sha256
/// (hex). Errors reading the stream are taken to be the compressed
/// data's: the blob is a local file.
pub fn to_temp(
    region: &Region,
    how: Compression,
    label: &str,
) -> Result<(Region, String), SourceError> {
    to_temp_with(region, how, label, limits())
}

/// [`to_temp`] under `limits`; also refused when the output would not
/// fit in the free space of the temporary directory.
pub fn to_temp_with(
    region: &Region,
    how: Compression,
    label: &str,
    limits: Limits,
) -> Result<(Region, String), SourceError> {
    to_temp_until(region, how, label, limits, &AtomicBool::new(false))
}

/// [`to_temp_with`] that gives up as soon as `stop` is set (by a digest
/// check running beside it, whose error is then the one reported).
pub fn to_temp_until(
    region: &Region,
    how: Compression,
    label: &str,
    limits: Limits,
    stop: &AtomicBool,
) -> Result<(Region, String), SourceError> {
    use std::io::Write as _;
    let tmp = std::env::temp_dir();
    let free = free_bytes(&tmp).map_err(SourceError::io(&tmp))?;
    let file = tempfile::tempfile().map_err(SourceError::io(&tmp))?;
    let mut out = io::BufWriter::with_capacity(1 << 16, file);
    let mut input = how.reader(region.reader());
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(SourceError::Io {
                path: tmp,
                source: io::Error::other("stopped: the layer's digest does not match"),
            });
        }
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(SourceError::Corrupt {
                    layer: label.to_string(),
                    what: how.name(),
                    source,
                });
            }
        };
        total += n as u64;
        if total > limits.max_bytes {
            return Err(SourceError::LayerTooLarge {
                layer: label.to_string(),
                limit: limits.max_bytes,
            });
        }
        if total > limits.ratio_after && total / region.len().max(1) > limits.max_ratio {
            return Err(SourceError::LayerRatio {
                layer: label.to_string(),
                compressed: region.len(),
                ratio: limits.max_ratio,
            });
        }
        if total > free {
            return Err(SourceError::NoSpace {
                layer: label.to_string(),
                dir: tmp,
                free,
            });
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(SourceError::io(&tmp))?;
    }
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(SourceError::io(&tmp))?;
    let region = Region::whole(file).map_err(SourceError::io(&tmp))?;
    Ok((region, hex(&hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn zstd(b: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn region(bytes: &[u8]) -> Region {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        Region::whole(f).unwrap()
    }

    fn unpack(bytes: &[u8], how: Compression) -> Result<Vec<u8>, SourceError> {
        let (out, sha) = to_temp(&region(bytes), how, "layer 1/1")?;
        let data = out.read_exact_at(0, out.len() as usize).unwrap();
        assert_eq!(sha, hex(&Sha256::digest(&data)));
        Ok(data)
    }

    /// A skippable frame: zstd:chunked keeps its table of contents in them.
    fn skippable(payload: &[u8]) -> Vec<u8> {
        let mut v = 0x184D_2A5Eu32.to_le_bytes().to_vec();
        v.extend((payload.len() as u32).to_le_bytes());
        v.extend(payload);
        v
    }

    #[test]
    fn compression_is_told_from_the_first_bytes() {
        let mut tar_head = vec![0u8; 512];
        tar_head[..3].copy_from_slice(b"BZh");
        tar_head[257..262].copy_from_slice(b"ustar");
        assert_eq!(Compression::detect(&tar_head), Compression::None);
        assert_eq!(Compression::detect(&zstd(b"x")), Compression::Zstd);
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::detect(b"\xfd7zXZ\0"), Compression::Xz);
        assert_eq!(Compression::detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(Compression::detect(b"BZhx"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }

    /// Every frame is read, skippable ones passed over wherever they are.
    #[test]
    fn zstd_frames_are_read_in_turn() {
        let a = vec![b'a'; 300_000];
        let b: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut z = skippable(b"leading");
        z.extend(zstd(&a));
        z.extend(skippable(&[0xff; 1000]));
        z.extend(zstd(&b));
        z.extend(zstd(b""));
        z.extend(skippable(b""));
        let mut want = a.clone();
        want.extend(&b);
        assert_eq!(unpack(&z, Compression::Zstd).unwrap(), want);
    }

    /// A frame whose checksum is wrong, a stream cut short (in a frame or
    /// in a skippable frame) and bytes after the last frame that are no
    /// frame are all corrupt data, never a short layer.
    #[test]
    fn corrupt_zstd_is_refused() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let good = zstd(&data);
        assert_eq!(unpack(&good, Compression::Zstd).unwrap(), data);
        let mut bad_sum = good.clone();
        *bad_sum.last_mut().unwrap() ^= 1;
        let mut cut = good.clone();
        cut.truncate(good.len() / 2);
        let mut cut_skip = good.clone();
        cut_skip.extend(&skippable(b"0123456789")[..12]);
        let mut trailing = good.clone();
        trailing.extend(b"not a frame");
        for (what, bytes) in [
            ("checksum", bad_sum),
            ("cut", cut),
            ("cut skippable frame", cut_skip),
            ("trailing bytes", trailing),
        ] {
            match unpack(&bytes, Compression::Zstd) {
                Err(e @ SourceError::Corrupt { what: "zstd", .. }) => {
                    assert_eq!(e.to_string(), "layer 1/1: corrupt zstd data", "{what}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    /// xz and bzip2 (what the CLIs write: several streams concatenated are
    /// read whole, a cut stream is corrupt).
    #[test]
    fn xz_and_bzip2_streams_are_read() {
        let cli = |tool: &str, data: &[u8]| {
            let mut c = std::process::Command::new(tool)
                .args(["-c", "-6"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{tool} is required for this test: {e}"));
            c.stdin.take().unwrap().write_all(data).unwrap();
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            out.stdout
        };
        let a: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        for (tool, how) in [("xz", Compression::Xz), ("bzip2", Compression::Bzip2)] {
            let mut z = cli(tool, &a);
            assert_eq!(Compression::detect(&z), how, "{tool}");
            z.extend(cli(tool, b"tail"));
            let mut want = a.clone();
            want.extend(b"tail");
            assert_eq!(unpack(&z, how).unwrap(), want, "{tool}");
            z.truncate(z.len() / 2);
            assert!(
                matches!(unpack(&z, how), Err(SourceError::Corrupt { .. })),
                "{tool}"
            );
        }
    }

    #[test]
    fn gzip_members_are_read_in_turn() {
        let gz = |b: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(b).unwrap();
            e.finish().unwrap()
        };
        let mut z = gz(b"first ");
        z.extend(gz(b"second"));
        assert_eq!(unpack(&z, Compression::Gzip).unwrap(), b"first second");
        let mut cut = gz(&[9u8; 10_000]);
        cut.truncate(cut.len() - 3);
        assert!(matches!(
            unpack(&cut, Compression::Gzip),
            Err(SourceError::Corrupt { what: "gzip", .. })
        ));
    }
}
