//! `trace merge`: the union of several traces (CI shards, several suites,
//! several attach sessions). Associative and order-independent: the
//! result depends only on the set of leaf traces, so merging in any order
//! or grouping gives the same bytes.
use std::collections::{BTreeMap, BTreeSet};

use super::trace::{
    Counters, Exec, ExecKey, ExitInfo, FORMAT_NAME, FORMAT_VERSION, FileEntry, LostEvents,
    ScopeInfo, Syscalls, Trace, Unobserved,
};

/// One input: its label (for `seen_in`) and the trace.
pub struct Input {
    pub label: String,
    pub trace: Trace,
}

/// The leaf labels an input stands for: its own label, or for an already
/// merged trace the labels it was merged from.
fn leaves(i: &Input) -> Vec<String> {
    if i.trace.merged_from.is_empty() {
        vec![i.label.clone()]
    } else {
        i.trace.merged_from.clone()
    }
}

fn add_lost(into: &mut LostEvents, from: &LostEvents) {
    into.total += from.total;
    if into.per_cpu.len() < from.per_cpu.len() {
        into.per_cpu.resize(from.per_cpu.len(), 0);
    }
    for (a, b) in into.per_cpu.iter_mut().zip(&from.per_cpu) {
        *a += b;
    }
    for (k, v) in &from.by_cause {
        *into.by_cause.entry(k.clone()).or_insert(0) += v;
    }
}

fn add_counters(into: &mut Counters, from: &Counters) {
    into.syscalls_seen += from.syscalls_seen;
    into.deduplicated_in_kernel += from.deduplicated_in_kernel;
    into.records += from.records;
    into.unreadable_paths += from.unreadable_paths;
    into.unresolved_paths += from.unresolved_paths;
    into.proc_link_paths += from.proc_link_paths;
    into.truncated_paths += from.truncated_paths;
    into.malformed_records += from.malformed_records;
    into.stale_bases += from.stale_bases;
    into.unobserved_results += from.unobserved_results;
    into.missed_by_kernel += from.missed_by_kernel;
}

/// Merges `inputs`, taking each apart as it comes (entries are moved, not
/// copied): the caller may read them one at a time.
pub fn merge(inputs: impl IntoIterator<Item = Input>) -> Trace {
    let mut m = merge_parts(inputs);
    let files = std::mem::take(&mut m.files);
    let mut t = m.head;
    t.files = files.into_iter().map(|e| finish(e, &m.names)).collect();
    t
}

/// A merge whose file entries are made one at a time as they are taken
/// (see [`Merged::files`]), so they can be written out without the whole
/// list of finished entries being held.
pub struct Merged {
    /// Everything but the files.
    pub head: Trace,
    files: Vec<(FileEntry, Seen)>,
    names: Vec<String>,
}

impl Merged {
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The merged entries, in order.
    pub fn files(self) -> (Trace, impl Iterator<Item = FileEntry>) {
        let names = self.names;
        (
            self.head,
            self.files.into_iter().map(move |e| finish(e, &names)),
        )
    }
}

/// The leaves that saw an entry, by number: one (no allocation, as for
/// every entry of a trace that is not itself merged) or several.
enum Seen {
    One(u32),
    Many(Vec<u32>),
}

impl Seen {
    fn of(ids: &[u32]) -> Seen {
        match ids {
            [one] => Seen::One(*one),
            _ => Seen::Many(ids.to_vec()),
        }
    }

    fn into_vec(self) -> Vec<u32> {
        match self {
            Seen::One(i) => vec![i],
            Seen::Many(v) => v,
        }
    }

    fn absorb(&mut self, other: Seen) {
        let mut v = std::mem::replace(self, Seen::Many(Vec::new())).into_vec();
        v.extend(other.into_vec());
        *self = Seen::Many(v);
    }
}

fn finish((mut f, seen): (FileEntry, Seen), names: &[String]) -> FileEntry {
    let mut seen = seen.into_vec();
    f.accesses.sort();
    f.accesses.dedup();
    f.accesses.shrink_to_fit();
    seen.sort_by(|a, b| names[*a as usize].cmp(&names[*b as usize]));
    seen.dedup();
    f.seen_in = seen
        .into_iter()
        .map(|i| names[i as usize].clone())
        .collect();
    f
}

/// [`merge`], the entries left to be finished.
pub fn merge_parts(inputs: impl IntoIterator<Item = Input>) -> Merged {
    let mut labels = BTreeSet::new();
    // Leaf labels by number: an entry's `seen_in` is a few numbers while
    // merging, not a set of strings per file.
    let mut label_ids: BTreeMap<String, u32> = BTreeMap::new();
    // Every entry of every input, sorted and united below: a flat list
    // costs a third of a tree keyed by name.
    let mut files: Vec<(FileEntry, Seen)> = Vec::new();
    let mut execs: BTreeMap<ExecKey, Exec> = BTreeMap::new();
    let mut binds = BTreeSet::new();
    let mut lost = LostEvents::default();
    let mut counters = Counters::default();
    let (mut complete, mut code, mut leftovers) = (true, 0, 0);
    let mut numbers: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let mut compat: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let mut unobserved: BTreeMap<(String, String, u32), u64> = BTreeMap::new();
    let mut reasons: BTreeSet<String> = BTreeSet::new();
    for input in inputs {
        let leaf = leaves(&input);
        let t = input.trace;
        let mut id = |l: &String| {
            let next = label_ids.len() as u32;
            *label_ids.entry(l.clone()).or_insert(next)
        };
        let leaf_ids: Vec<u32> = leaf.iter().map(&mut id).collect();
        labels.extend(leaf);
        complete &= t.complete;
        code = code.max(t.exit.code);
        leftovers += t.scope.leftovers_killed;
        binds.extend(t.scope.bind_mounts);
        add_lost(&mut lost, &t.lost_events);
        add_counters(&mut counters, &t.counters);
        if let Some(s) = &t.syscalls {
            numbers
                .entry(s.arch.clone())
                .or_default()
                .extend(s.numbers.iter().copied());
            if let Some(c) = &s.compat {
                compat
                    .entry(c.arch.clone())
                    .or_default()
                    .extend(c.numbers.iter().copied());
            }
        }
        for u in t.unobserved {
            *unobserved.entry((u.channel, u.op, u.pid)).or_default() += u.count;
        }
        reasons.extend(t.incomplete_reasons);
        for e in t.execs {
            // The smallest entry wins whatever the order.
            match execs.entry(e.key()) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(e);
                }
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    if &e < o.get() {
                        o.insert(e);
                    }
                }
            }
        }
        // Exactly the room needed: growing by doubling would hold up to
        // twice the list, and the old and new buffers both while copying.
        files.reserve_exact(t.files.len());
        for mut f in t.files {
            let seen = if f.seen_in.is_empty() {
                Seen::of(&leaf_ids)
            } else {
                Seen::Many(f.seen_in.iter().map(&mut id).collect())
            };
            f.seen_in = Vec::new();
            files.push((f, seen));
        }
    }
    // Keyed by the exact name: two non-UTF-8 names can print the same.
    fn key(f: &FileEntry) -> (&str, Option<&str>) {
        (&f.path, f.path_hex.as_deref())
    }
    files.sort_unstable_by(|a, b| key(&a.0).cmp(&key(&b.0)));
    files.dedup_by(|later, kept| {
        if key(&later.0) != key(&kept.0) {
            return false;
        }
        kept.0.truncated |= later.0.truncated;
        kept.0.accesses.append(&mut later.0.accesses);
        kept.1
            .absorb(std::mem::replace(&mut later.1, Seen::Many(Vec::new())));
        true
    });
    let mut names = vec![String::new(); label_ids.len()];
    for (l, i) in label_ids {
        names[i as usize] = l;
    }
    let merged_from: Vec<String> = labels.into_iter().collect();
    // One architecture per trace file; shards of another are not mixed in.
    let syscalls = numbers.into_iter().next().map(|(arch, n)| {
        let mut s = Syscalls::named(&arch, n.into_iter().collect());
        s.compat = compat
            .into_iter()
            .next()
            .map(|(arch, n)| Box::new(Syscalls::named(&arch, n.into_iter().collect())));
        s
    });
    let unobserved: Vec<Unobserved> = unobserved
        .into_iter()
        .map(|((channel, op, pid), count)| Unobserved {
            channel,
            op,
            pid,
            count,
        })
        .collect();
    let mut command = vec!["merge".to_string()];
    command.extend(merged_from.iter().cloned());
    let head = Trace {
        format: FORMAT_NAME.to_string(),
        version: FORMAT_VERSION,
        tool: format!("trace {}", env!("CARGO_PKG_VERSION")),
        command,
        exit: ExitInfo { code, signal: None },
        scope: ScopeInfo {
            mode: "merged".into(),
            cgroup: None,
            leftovers_killed: leftovers,
            image: None,
            root: None,
            container: None,
            bind_mounts: binds.into_iter().collect(),
        },
        complete,
        incomplete_reasons: reasons.into_iter().collect(),
        lost_events: lost,
        unobserved,
        counters,
        syscalls,
        merged_from,
        execs: execs.into_values().collect(),
        files: Vec::new(),
    };
    Merged { head, files, names }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        trace::{Access, Op},
        write::to_json,
    };

    fn access(op: Op, result: &str) -> Access {
        Access {
            result: crate::model::trace::name(result),
            errno: (result != "ok").then_some(2),
            ..Access::new(op, "openat")
        }
    }

    fn trace(files: &[(&str, Op, &str)], lost: u64, bind: Option<&str>) -> Trace {
        Trace {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            tool: "trace test".into(),
            command: vec!["x".into()],
            exit: ExitInfo::default(),
            scope: ScopeInfo {
                bind_mounts: bind.map(|b| vec![b.to_string()]).unwrap_or_default(),
                ..ScopeInfo::default()
            },
            complete: lost == 0,
            incomplete_reasons: Vec::new(),
            unobserved: Vec::new(),
            lost_events: LostEvents {
                total: lost,
                per_cpu: vec![lost, 0],
                by_cause: BTreeMap::new(),
            },
            counters: Counters::default(),
            syscalls: None,
            merged_from: Vec::new(),
            execs: Vec::new(),
            files: files
                .iter()
                .map(|(p, op, r)| FileEntry {
                    path: p.to_string(),
                    path_hex: None,
                    truncated: false,
                    accesses: vec![access(*op, r)],
                    seen_in: Vec::new(),
                })
                .collect(),
        }
    }

    fn input(label: &str, t: Trace) -> Input {
        Input {
            label: label.into(),
            trace: t,
        }
    }

    fn inputs() -> Vec<Input> {
        vec![
            input(
                "a",
                trace(
                    &[("/etc/passwd", Op::Open, "ok"), ("/x", Op::Stat, "ENOENT")],
                    0,
                    None,
                ),
            ),
            input(
                "b",
                trace(&[("/etc/passwd", Op::Stat, "ok")], 3, Some("/suite")),
            ),
            input("c", trace(&[("/usr/bin/env", Op::Exec, "ok")], 0, None)),
        ]
    }

    /// What is never the image's: runtime filesystems and what lies below
    /// a bind mount, by whole components, for any name.
    #[test]
    fn beyond_image_is_runtime_filesystems_and_binds() {
        use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::Path};
        let t = trace(&[], 0, Some("/suite"));
        for (p, beyond) in [
            ("/proc/self/maps", true),
            ("/dev/null", true),
            ("/run/lock/x", true),
            ("/suite", true),
            ("/suite/tests/a.py", true),
            ("/suitex/a.py", false),
            ("/procfoo", false),
            ("/usr/lib/x.so", false),
        ] {
            assert_eq!(t.beyond_image(Path::new(p)), beyond, "{p}");
        }
        let odd = Path::new(OsStr::from_bytes(b"/suite/\xff"));
        assert!(t.beyond_image(odd));
        assert!(!t.beyond_image(Path::new(OsStr::from_bytes(b"/etc/\xff"))));
    }

    #[test]
    fn union_keeps_every_access_and_its_origins() {
        let m = merge(inputs());
        assert_eq!(m.merged_from, vec!["a", "b", "c"]);
        let passwd = m.files.iter().find(|f| f.path == "/etc/passwd").unwrap();
        assert_eq!(passwd.accesses.len(), 2);
        assert_eq!(passwd.seen_in, vec!["a", "b"]);
        assert!(!m.complete);
        assert_eq!(m.lost_events.total, 3);
        assert_eq!(m.scope.bind_mounts, vec!["/suite"]);
        assert_eq!(m.files.len(), 3);
    }

    #[test]
    fn order_and_grouping_do_not_matter() {
        let flat = to_json(&merge(inputs()));
        let mut rev = inputs();
        rev.reverse();
        assert_eq!(to_json(&merge(rev)), flat);
        let mut i = inputs();
        let c = i.pop().unwrap();
        let ab = merge(i);
        let nested = merge([input("ab.json", ab), c]);
        assert_eq!(to_json(&nested), flat);
        let mut i = inputs();
        let a = i.remove(0);
        let bc = merge(i);
        assert_eq!(to_json(&merge([a, input("bc.json", bc)])), flat);
    }

    /// Two non-UTF-8 names that print alike stay two entries, each with
    /// its own bytes.
    #[test]
    fn names_are_kept_apart_by_their_bytes() {
        let mut a = trace(&[("/d/\u{fffd}", Op::Open, "ok")], 0, None);
        a.files[0].path_hex = Some("2f642fff".into());
        let mut b = trace(&[("/d/\u{fffd}", Op::Open, "ok")], 0, None);
        b.files[0].path_hex = Some("2f642ffe".into());
        let c = trace(&[("/d/\u{fffd}", Op::Open, "ok")], 0, None);
        let m = merge([input("a", a), input("b", b), input("c", c)]);
        let got: Vec<_> = m
            .files
            .iter()
            .map(|f| (f.os_path(), f.seen_in.clone()))
            .collect();
        use std::os::unix::ffi::OsStrExt;
        let p = |b: &[u8]| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b));
        assert_eq!(
            got,
            vec![
                (p("/d/\u{fffd}".as_bytes()), vec!["c".to_string()]),
                (p(b"/d/\xfe"), vec!["b".to_string()]),
                (p(b"/d/\xff"), vec!["a".to_string()]),
            ]
        );
    }
}
