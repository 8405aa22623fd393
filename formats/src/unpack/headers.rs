//! The tar members that describe the next entry (PAX `x` headers, GNU long names and
//! long links), read with a cap: their size comes from the layer, and a few bytes of
//! gzip can claim gigabytes.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::UnpackError;

/// What one layer may make the unpacker hold or create.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of one PAX header, GNU long name or long link.
    pub max_header: u64,
    /// Tar members of one layer, headers included.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header: 1 << 20,
            max_entries: 1 << 20,
        }
    }
}

/// The extended headers seen since the last file entry; they describe the next one.
#[derive(Debug, Default)]
pub struct Extended {
    pax: Option<Vec<u8>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Extended {
    /// Takes in `entry` if it is an extended header (returns true) after checking its
    /// size against the limit.
    pub fn absorb<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        limits: &Limits,
    ) -> Result<bool, UnpackError> {
        use tar::EntryType;
        let kind = entry.header().entry_type();
        let slot = match kind {
            EntryType::XHeader => &mut self.pax,
            EntryType::GNULongName => &mut self.long_name,
            EntryType::GNULongLink => &mut self.long_link,
            // A global header applies to the whole archive; nothing here uses one.
            EntryType::XGlobalHeader => {
                read_capped(entry, limits.max_header)?;
                return Ok(true);
            }
            _ => return Ok(false),
        };
        if slot.is_some() {
            return Err(UnpackError::Header {
                detail: format!(
                    "two {} headers describe the same entry",
                    kind_name(kind.as_byte())
                ),
            });
        }
        *slot = Some(read_capped(entry, limits.max_header)?);
        Ok(true)
    }

    /// Whether headers wait for an entry (a stream that ends here is truncated).
    pub fn is_pending(&self) -> bool {
        self.pax.is_some() || self.long_name.is_some() || self.long_link.is_some()
    }

    /// Hands over what was gathered for the entry that follows.
    pub fn take(&mut self) -> Extended {
        std::mem::take(self)
    }

    fn pax_value(&self, key: &str) -> Option<&[u8]> {
        let pax = self.pax.as_deref()?;
        tar::PaxExtensions::new(pax)
            .filter_map(Result::ok)
            .filter(|e| e.key_bytes() == key.as_bytes())
            .last()
            .map(|e| e.value_bytes())
    }

    /// The entry's path: a GNU long name, else PAX `path`, else the header's.
    pub fn path<'h>(&'h self, header: &'h tar::Header) -> PathBuf {
        let bytes: Cow<'h, [u8]> = match (&self.long_name, self.pax_value("path")) {
            (Some(long), _) => Cow::Borrowed(trim_nul(long)),
            (None, Some(pax)) => Cow::Borrowed(pax),
            (None, None) => header.path_bytes(),
        };
        bytes_path(&bytes)
    }

    /// The link target: a GNU long link, else PAX `linkpath`, else the header's.
    pub fn link<'h>(&'h self, header: &'h tar::Header) -> Option<PathBuf> {
        let bytes: Cow<'h, [u8]> = match (&self.long_link, self.pax_value("linkpath")) {
            (Some(long), _) => Cow::Borrowed(trim_nul(long)),
            (None, Some(pax)) => Cow::Borrowed(pax),
            (None, None) => header.link_name_bytes()?,
        };
        Some(bytes_path(&bytes))
    }

    /// PAX `uid` / `gid`, which hold ids too large for the header's octal fields.
    pub fn id(&self, key: &str, header_value: u64) -> Result<u64, UnpackError> {
        match self.pax_value(key) {
            None => Ok(header_value),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| UnpackError::Header {
                    detail: format!("PAX {key} {:?} is not a number", String::from_utf8_lossy(v)),
                }),
        }
    }

    /// A PAX `size` that disagrees with the header would make this reader see other
    /// files than another one does: refused rather than picking one.
    pub fn check_size(&self, header: &tar::Header) -> Result<(), UnpackError> {
        let Some(v) = self.pax_value("size") else {
            return Ok(());
        };
        let header_size = header.entry_size().map_err(UnpackError::Read)?;
        if std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            == Some(header_size)
        {
            Ok(())
        } else {
            Err(UnpackError::Header {
                detail: format!(
                    "PAX size {:?} differs from the header's {header_size}",
                    String::from_utf8_lossy(v)
                ),
            })
        }
    }

    /// `SCHILY.xattr.*` records: extended attributes to set on the entry.
    pub fn xattrs(&self) -> Vec<(&str, &[u8])> {
        let Some(pax) = self.pax.as_deref() else {
            return Vec::new();
        };
        tar::PaxExtensions::new(pax)
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.key().ok()?.strip_prefix("SCHILY.xattr.")?;
                Some((name, e.value_bytes()))
            })
            .collect()
    }
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        b'x' => "PAX",
        b'L' => "GNU long name",
        b'K' => "GNU long link",
        _ => "extended",
    }
}

fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &bytes[..end]
}

fn bytes_path(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(bytes)).to_path_buf()
}

/// The body of a header member, refused before reading if it claims more than `max`.
fn read_capped<R: Read>(entry: &mut tar::Entry<R>, max: u64) -> Result<Vec<u8>, UnpackError> {
    let kind = entry.header().entry_type().as_byte();
    let size = entry.size();
    if size > max {
        return Err(UnpackError::Header {
            detail: format!(
                "a {} header of {size} bytes, more than the {max} allowed",
                kind_name(kind)
            ),
        });
    }
    let mut body = Vec::with_capacity(size as usize);
    entry
        .take(max)
        .read_to_end(&mut body)
        .map_err(UnpackError::Read)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_nuls_are_not_part_of_a_long_name() {
        assert_eq!(trim_nul(b"a/b\0\0"), b"a/b");
        assert_eq!(trim_nul(b"\0"), b"");
        assert_eq!(trim_nul(b"x"), b"x");
    }
}
