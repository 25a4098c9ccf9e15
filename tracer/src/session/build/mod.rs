//! A build: traces and a full image in, a minimal image out, with the
//! report of what was kept and why, the SBOM and the seccomp profile.
pub mod report;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

pub use self::report::{
    Largest, Loaded, Missing, Packages, RelativeInterpreter, Report, Size, human, summary,
};
use super::sbom::{SbomSpec, check_writable, created, trace_ref, write_sbom};
use crate::{
    closure::{self, Kept, Level, Reason, packages, programs, rules::Rules},
    model::{merge, seccomp, sometimes, trace::Trace, write},
    output::{self, target},
    source::{
        ImageRef,
        image::Image,
        rootfs::{DataBytes, Kind, Rootfs},
    },
};

/// What to build from what.
#[derive(Clone, Debug)]
pub struct BuildSpec {
    /// The full image (or root filesystem directory).
    pub from: ImageRef,
    /// Traces from `trace run`; several are merged.
    pub traces: Vec<PathBuf>,
    /// Where the minimal image goes (a path that must not exist, or an
    /// engine).
    pub output: ImageRef,
    pub image: ImageSpec,
    /// Also write the report as JSON here.
    pub report: Option<PathBuf>,
    /// Also write a seccomp profile beside the image.
    pub seccomp: bool,
}

/// How the minimal image is made (build and minimize).
#[derive(Clone, Debug, Default)]
pub struct ImageSpec {
    /// For a plain output path; None: OCI layout.
    pub format: Option<output::Format>,
    /// Image name, e.g. `app:minimal`.
    pub tag: Option<String>,
    /// Paths or globs kept as well.
    pub include: Vec<String>,
    /// Globs never kept.
    pub exclude: Vec<String>,
    /// Files listing paths or globs to keep.
    pub include_from: Vec<PathBuf>,
    /// Leave the (trimmed) dpkg database out.
    pub no_package_db: bool,
    pub keep: KeepSpec,
    pub sbom: SbomSpec,
}

/// What is kept around each used path.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeepSpec {
    pub level: Level,
    /// With package levels: documentation, man pages and locales too.
    pub docs: bool,
    /// Every entry of each directory the run listed.
    pub listed: bool,
}

impl KeepSpec {
    pub fn options(
        &self,
        config: Option<&oci_spec::image::ImageConfiguration>,
    ) -> closure::Options {
        closure::Options {
            keep: self.level,
            keep_docs: self.docs,
            keep_listed: self.listed,
            config_programs: programs::from_config(config),
        }
    }
}

/// Builds the image and writes `--report`, the SBOM and the profile;
/// returns the report.
pub fn build(spec: &BuildSpec) -> Result<Report> {
    let plan = target::plan(&spec.output, spec.image.format, spec.image.tag.as_deref())?;
    if let target::Plan::File { path, .. } = &plan
        && (path.exists() || path.is_symlink())
    {
        bail!("{} already exists; not overwriting it", path.display());
    }
    plan.check()?;
    // Checked before any work, so a bad SBOM path leaves no image.
    let sbom_path = spec.image.sbom.path(&plan.artifact_base());
    if let Some(p) = &sbom_path {
        check_writable(p)?;
    }
    let traces = spec
        .traces
        .iter()
        .map(|p| write::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let rules = Rules::new(
        &spec.image.include,
        &spec.image.exclude,
        &spec.image.include_from,
    )?;
    crate::timing::mark("traces read");
    let image = crate::cache::open_for_read(&spec.from).context("reading the source image")?;
    crate::timing::mark("source image opened");
    let kept = closure::compute_with(
        image.rootfs.as_ref(),
        &traces,
        &rules,
        &spec.image.keep.options(image.config.as_ref()),
    )?;
    crate::timing::mark("closure computed");
    let (sometimes, profile) = from_traces(spec, traces)?;
    let mut paths: BTreeSet<PathBuf> = kept.paths.keys().cloned().collect();
    if !spec.image.no_package_db {
        add_os_identity(image.rootfs.as_ref(), &rules, &mut paths);
    }
    // The package database, trimmed to what is still inside; the SBOM
    // reads it even when the image leaves it out.
    let db = match spec.image.no_package_db && sbom_path.is_none() {
        true => None,
        false => {
            packages::trim(image.rootfs.as_ref(), &paths).context("reading the dpkg database")?
        }
    };
    let with_db = with_package_db(image.rootfs.as_ref(), db.as_ref());
    if let Some(db) = db.as_ref().filter(|_| !spec.image.no_package_db) {
        for p in db.files.keys().chain(&db.lists) {
            insert_with_parents(&mut paths, p);
        }
    }
    let fs: &dyn Rootfs = &with_db;
    crate::timing::mark("package database trimmed");
    // The SBOM is gathered before the image is written (so a failure
    // leaves neither) from exactly the paths the image gets.
    let sbom_doc = match &sbom_path {
        Some(_) => Some(gather_sbom(spec, &plan, &image, fs, &paths)?),
        None => None,
    };
    crate::timing::mark("sbom gathered");
    let sizes = Sizes::of(fs, &paths);
    let delivered = deliver(spec, &plan, &image, fs, &paths, sizes.bytes)?;
    crate::timing::mark("image written");
    let mut report = make_report(Made {
        spec,
        plan: &plan,
        image: &image,
        fs,
        paths: &paths,
        sizes,
        kept: &kept,
        delivered: &delivered,
        packages: db.filter(|_| !spec.image.no_package_db),
        sometimes,
    });
    if let (Some(mut doc), Some(path)) = (sbom_doc, &sbom_path) {
        doc.subject.digest = Some(delivered.written.manifest_digest.clone());
        report.sbom = Some(write_sbom(&doc, spec.image.sbom.format, path)?);
    }
    if let Some(profile) = profile {
        let mut out = plan.artifact_base().into_os_string();
        out.push(".seccomp.json");
        write_json(Path::new(&out), &profile)?;
    }
    if let Some(path) = &spec.report {
        write_json(path, &report)?;
    }
    Ok(report)
}

/// What the report and the profile need of the traces, taken before
/// anything is written (a bad profile leaves no image) and so that the
/// traces are not held while the image is made.
fn from_traces(
    spec: &BuildSpec,
    traces: Vec<Trace>,
) -> Result<(
    Vec<sometimes::Sometimes>,
    Option<oci_spec::runtime::LinuxSeccomp>,
)> {
    // One trace is its own union; several are taken apart by the merge.
    let merged = match <[_; 1]>::try_from(traces) {
        Ok([one]) => one,
        Err(traces) => {
            merge::merge(
                traces
                    .into_iter()
                    .zip(&spec.traces)
                    .map(|(trace, p)| merge::Input {
                        label: p.display().to_string(),
                        trace,
                    }),
            )
        }
    };
    let profile = match spec.seccomp {
        true => Some(seccomp::profile(&merged)?.0),
        false => None,
    };
    Ok((sometimes::sometimes(&merged), profile))
}

/// Scanners name the distribution (and so which advisories apply to the
/// packages) from os-release and /etc/debian_version: they go with the
/// database, before it is trimmed (their package is then kept). An
/// `--exclude` still wins: the user said these must not be there.
fn add_os_identity(fs: &dyn Rootfs, rules: &Rules, paths: &mut BTreeSet<PathBuf>) {
    for id in ["/etc/os-release", "/etc/debian_version"] {
        let Ok(Some(r)) = closure::resolve::resolve(fs, Path::new(id), true) else {
            continue;
        };
        let chain = || r.links.iter().chain(std::iter::once(&r.path));
        if matches!(fs.meta(&r.path), Ok(Some(m)) if m.kind == Kind::Regular)
            && chain().all(|p| rules.excluded_by(p).is_none())
        {
            for p in chain() {
                insert_with_parents(paths, p);
            }
        }
    }
}

fn insert_with_parents(paths: &mut BTreeSet<PathBuf>, p: &Path) {
    paths.extend(closure::resolve::parents(p));
    paths.insert(p.to_path_buf());
}

/// The source's files with the trimmed database's files over them.
fn with_package_db<'a>(
    fs: &'a dyn Rootfs,
    db: Option<&packages::PackageDb>,
) -> packages::WithFiles<'a> {
    packages::WithFiles {
        base: fs,
        files: db.map(|d| d.files.clone()).unwrap_or_default(),
        mtime: fs
            .meta(Path::new("/var/lib/dpkg/status"))
            .ok()
            .flatten()
            .map_or(0, |m| m.mtime),
    }
}

fn gather_sbom(
    spec: &BuildSpec,
    plan: &target::Plan,
    image: &Image,
    fs: &dyn Rootfs,
    paths: &BTreeSet<PathBuf>,
) -> Result<crate::sbom::Sbom> {
    let subject = crate::sbom::Subject {
        name: spec.output.to_string(),
        tag: match plan {
            target::Plan::File { tag, .. } => tag.clone(),
            target::Plan::Engine { name, .. } => Some(name.clone()),
        },
        digest: None,
        source_digest: image.digest.clone(),
        source_name: Some(spec.from.to_string()),
        traces: spec
            .traces
            .iter()
            .map(|t| trace_ref(t))
            .collect::<Result<_>>()?,
        supplier: spec.image.sbom.supplier.clone(),
        created: created(image.config.as_ref())?,
    };
    crate::sbom::collect(&crate::sbom::View { fs, paths }, subject).context("gathering the SBOM")
}

fn deliver(
    spec: &BuildSpec,
    plan: &target::Plan,
    image: &Image,
    fs: &dyn Rootfs,
    paths: &BTreeSet<PathBuf>,
    to_write: u64,
) -> Result<target::Delivered> {
    let counted =
        crate::progress::Counted::new(fs, crate::progress::bytes("building", Some(to_write)));
    plan.deliver(output::Spec {
        rootfs: &counted,
        paths,
        config: image.config.clone(),
        source_digest: image.digest.clone(),
        tag: None,
        format: output::Format::Oci,
    })
    .with_context(|| format!("writing {}", spec.output))
}

/// The kept regular files' sizes, each file's metadata read once: the
/// progress bar's total and the report's.
struct Sizes<'a> {
    /// Each hardlinked file counted once.
    bytes: u64,
    /// Largest first.
    files: Vec<(u64, &'a Path)>,
}

impl<'a> Sizes<'a> {
    fn of(fs: &dyn Rootfs, paths: &'a BTreeSet<PathBuf>) -> Sizes<'a> {
        let mut bytes = DataBytes::default();
        let mut files = Vec::new();
        for p in paths {
            if let Ok(Some(meta)) = fs.meta(p)
                && meta.kind == Kind::Regular
            {
                bytes.add(&meta);
                files.push((meta.size, p.as_path()));
            }
        }
        files.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        Sizes {
            bytes: bytes.total,
            files,
        }
    }
}

/// Everything the report is made from.
struct Made<'a> {
    spec: &'a BuildSpec,
    plan: &'a target::Plan,
    image: &'a Image,
    fs: &'a dyn Rootfs,
    paths: &'a BTreeSet<PathBuf>,
    sizes: Sizes<'a>,
    kept: &'a Kept,
    delivered: &'a target::Delivered,
    packages: Option<packages::PackageDb>,
    sometimes: Vec<sometimes::Sometimes>,
}

fn make_report(m: Made) -> Report {
    let (fs, kept) = (m.fs, m.kept);
    let listed = m.spec.image.keep.listed.then(|| listed_size(fs, kept));
    let mut by_reason = BTreeMap::new();
    for r in kept.paths.values() {
        *by_reason.entry(*r).or_insert(0) += 1;
    }
    let display = |p: &Path| p.display().to_string();
    Report {
        source: fs.describe(),
        source_digest: m.image.digest.clone(),
        output: m.spec.output.to_string(),
        format: match m.plan {
            target::Plan::File { format, .. } => format!("{format:?}").to_lowercase(),
            target::Plan::Engine { engine, .. } => engine.transport().to_string(),
        },
        manifest_digest: m.delivered.written.manifest_digest.clone(),
        loaded: m.delivered.loaded.as_ref().map(|(e, name, id)| Loaded {
            engine: e.program().to_string(),
            name: name.clone(),
            id: id.clone(),
        }),
        before: Size {
            bytes: m.image.total_bytes,
            entries: m.image.total_entries,
        },
        after: Size {
            bytes: m.sizes.bytes,
            entries: m.paths.len() as u64,
        },
        largest: m
            .sizes
            .files
            .iter()
            .take(10)
            .map(|(b, p)| Largest {
                path: display(p),
                bytes: *b,
            })
            .collect(),
        by_reason,
        kept: kept.paths.iter().map(|(p, r)| (display(p), *r)).collect(),
        not_in_source: kept.not_in_source.iter().map(|p| display(p)).collect(),
        missing_libraries: kept
            .missing_libraries
            .iter()
            .map(|(l, by)| Missing {
                library: l.clone(),
                needed_by: display(by),
            })
            .collect(),
        relative_interpreters: kept
            .relative_interpreters
            .iter()
            .map(|(i, by)| RelativeInterpreter {
                interpreter: i.clone(),
                named_by: display(by),
            })
            .collect(),
        packages: m.packages.map(|d| Packages {
            kept: d.kept,
            dropped: d.dropped,
        }),
        excluded: kept
            .excluded
            .iter()
            .map(|(p, pat)| (display(p), pat.clone()))
            .collect(),
        keep: m.spec.image.keep.level,
        pulled_by: kept
            .units
            .iter()
            .filter(|(p, _)| kept.paths.contains_key(*p))
            .map(|(p, u)| (display(p), u.clone()))
            .collect(),
        interpreters: kept.interpreters.clone(),
        listed,
        sometimes: m.sometimes,
        sbom: None,
    }
}

/// What `--keep-listed` added.
fn listed_size(fs: &dyn Rootfs, kept: &Kept) -> Size {
    let mut s = Size {
        bytes: 0,
        entries: 0,
    };
    for (p, r) in &kept.paths {
        if *r == Reason::Listed {
            s.entries += 1;
            if let Ok(Some(m)) = fs.meta(p)
                && m.kind == Kind::Regular
            {
                s.bytes += m.size;
            }
        }
    }
    s
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(value)?;
    json.push(b'\n');
    write::write_atomic(path, &json)?;
    Ok(())
}
