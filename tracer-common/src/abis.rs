//! The running architecture's syscall ABIs (userspace only): numbers and
//! names from the `syscalls` crate (generated from the kernel's syscall
//! tables), and the per-number spec table the kernel side reads.
use std::boxed::Box;

use crate::{SPECS_LEN, SYSCALL_NR_MAX, Specs, SyscallSpec, abi, syscalls::TABLE};

/// One syscall ABI: its name (as seccomp profiles spell architectures)
/// and its table.
#[derive(Clone, Copy, Debug)]
pub struct Abi {
    /// `x86_64`, `x86` (ia32), `aarch64`, `arm` (aarch32).
    pub arch: &'static str,
    number: fn(&str) -> Option<u32>,
    name: fn(u32) -> Option<&'static str>,
}

macro_rules! abi_of {
    ($arch:literal, $module:ident) => {
        Abi {
            arch: $arch,
            number: |name| {
                name.parse::<syscalls::$module::Sysno>()
                    .ok()
                    .map(|s| s.id() as u32)
            },
            name: |nr| syscalls::$module::Sysno::new(nr as usize).map(|s| s.name()),
        }
    };
}

impl Abi {
    pub fn number(&self, name: &str) -> Option<u32> {
        (self.number)(name)
    }

    pub fn name(&self, nr: u32) -> Option<&'static str> {
        (self.name)(nr)
    }

    /// The ABI of an architecture name as a trace records it.
    pub fn by_arch(arch: &str) -> Option<Abi> {
        match arch {
            "x86_64" => Some(abi_of!("x86_64", x86_64)),
            "x86" => Some(abi_of!("x86", x86)),
            "aarch64" => Some(abi_of!("aarch64", aarch64)),
            "arm" => Some(abi_of!("arm", arm)),
            _ => None,
        }
    }
}

/// This machine's native ABI.
pub fn native() -> Abi {
    #[cfg(target_arch = "x86_64")]
    return abi_of!("x86_64", x86_64);
    #[cfg(target_arch = "aarch64")]
    return abi_of!("aarch64", aarch64);
}

/// This machine's compat ABI (ia32 on x86_64, aarch32 on arm64).
pub fn compat() -> Option<Abi> {
    #[cfg(target_arch = "x86_64")]
    return Some(abi_of!("x86", x86));
    #[cfg(target_arch = "aarch64")]
    return Some(abi_of!("arm", arm));
}

/// The ABI a record's `abi` byte names.
pub fn of_record(abi_byte: u8) -> Option<Abi> {
    match abi_byte {
        abi::NATIVE => Some(native()),
        abi::COMPAT => compat(),
        _ => None,
    }
}

/// What each syscall number records, for both ABIs.
pub fn specs() -> Box<Specs> {
    use std::collections::HashMap;
    let mut specs = Box::new([SyscallSpec::default(); SPECS_LEN]);
    // Rows by name, then one pass over each ABI's numbers (name lookups
    // by number are a table index; by name they are a search).
    let mut rows: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, row) in TABLE.iter().enumerate() {
        rows.entry(row.name).or_default().push(index);
    }
    let abis = [(abi::NATIVE, Some(native())), (abi::COMPAT, compat())];
    for (which, abi) in &abis {
        let Some(abi) = abi else { continue };
        for nr in 0..SYSCALL_NR_MAX as u32 {
            let Some(indexes) = abi.name(nr).and_then(|name| rows.get(name)) else {
                continue;
            };
            for &index in indexes {
                let row = &TABLE[index];
                if row.abi.is_some_and(|only| only != *which) {
                    continue;
                }
                specs[usize::from(*which) * SYSCALL_NR_MAX + nr as usize] = row.spec(index);
            }
        }
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::row_of;
    use std::vec::Vec;

    fn spec_of(which: u8, name: &str) -> SyscallSpec {
        let abi = if which == abi::NATIVE {
            native()
        } else {
            compat().unwrap()
        };
        let nr = abi.number(name).unwrap() as usize;
        specs()[usize::from(which) * SYSCALL_NR_MAX + nr]
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn numbers_come_from_the_kernel_tables() {
        let n = native();
        assert_eq!(n.number("openat"), Some(257));
        assert_eq!(n.name(2), Some("open"));
        let c = compat().unwrap();
        // ia32 numbers are not x86_64 ones: 4 is write there, stat here.
        assert_eq!(c.name(4), Some("write"));
        assert_eq!(c.number("openat"), Some(295));
        assert_eq!(spec_of(abi::COMPAT, "write").id, 0);
        let stat64 = spec_of(abi::COMPAT, "stat64");
        assert_eq!(row_of(stat64.id).unwrap().name, "stat64");
    }

    #[test]
    fn every_row_is_a_real_syscall_somewhere() {
        let abis: Vec<Abi> = ["x86_64", "x86", "aarch64", "arm"]
            .iter()
            .filter_map(|a| Abi::by_arch(a))
            .collect();
        for row in TABLE {
            assert!(
                abis.iter().any(|a| a.number(row.name).is_some()),
                "{} is in no syscall table",
                row.name
            );
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn fanotify_mark_arguments_differ_per_abi() {
        let native = spec_of(abi::NATIVE, "fanotify_mark");
        let compat = spec_of(abi::COMPAT, "fanotify_mark");
        assert_eq!((native.dirfd1, native.path1), (3, 4));
        assert_eq!((compat.dirfd1, compat.path1), (4, 5));
    }
}
