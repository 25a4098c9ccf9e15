//! The SBOM's content, independent of any document format.
use std::path::PathBuf;

/// Where a package comes from (the purl type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ecosystem {
    Deb,
    Pypi,
    Npm,
    Gem,
}

impl Ecosystem {
    pub fn purl_type(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Pypi => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Gem => "gem",
        }
    }
}

/// One package present in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    /// dpkg's architecture (`amd64`, `all`); None for language packages.
    pub arch: Option<String>,
    /// An SPDX licence expression, only when the package declares one.
    pub license: Option<String>,
    /// Who supplies it (the Debian maintainer, the package's author).
    pub supplier: Option<String>,
    pub purl: String,
    /// Where its metadata is (`/var/lib/dpkg/status`, a `dist-info` dir).
    pub source: PathBuf,
    /// The regular files it owns that are in the image, sorted.
    pub present: Vec<PathBuf>,
    /// How many paths it records (files, links and directories) that are
    /// not in the image: zero when the package is whole.
    pub absent: usize,
}

impl Package {
    pub fn partial(&self) -> bool {
        self.absent > 0
    }
}

/// One regular file in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub path: PathBuf,
    pub sha256: String,
    pub sha1: String,
    pub size: u64,
    /// Index into `Sbom::packages` of the package owning it.
    pub owner: Option<usize>,
}

/// A trace the image was built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRef {
    pub name: String,
    pub sha256: String,
}

/// The image the SBOM describes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// A name for it: the tag, or the output path / source description.
    pub name: String,
    pub tag: Option<String>,
    /// The image's manifest digest (`sha256:…`) when it has one.
    pub digest: Option<String>,
    /// The full image a minimal one was built from.
    pub source_digest: Option<String>,
    pub source_name: Option<String>,
    pub traces: Vec<TraceRef>,
    /// Who supplies the image, as the user says (`--sbom-supplier`).
    pub supplier: Option<String>,
    /// RFC 3339, UTC, whole seconds: the image's creation time.
    pub created: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sbom {
    pub subject: Subject,
    /// Sorted by ecosystem, name, version, architecture.
    pub packages: Vec<Package>,
    /// Sorted by path.
    pub files: Vec<File>,
}
