//! The journal format on its own: damage never decodes, the fuzz target's seeds, and hostile
//! journals planted in a simulated shared directory.

use crate::txn::{Entry, Journal};
use crate::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[test]
fn the_journal_decoder_rejects_every_damage_without_panicking() {
    use crate::txn::journal::{Dir, Name};
    let j = Journal {
        id: [9; 16],
        dirs: vec![
            Dir {
                dev: 1,
                ino: 10,
                path: PathBuf::from("/d"),
            },
            Dir {
                dev: 1,
                ino: 11,
                path: PathBuf::from("/e"),
            },
        ],
        entries: vec![
            Entry::Put {
                dir: 0,
                temp: ".a.untorn-00000000.tmp".into(),
                target: "a".into(),
                dev: 1,
                ino: 2,
                size: 1234,
                crc: 0xdead_beef,
            },
            Entry::Remove {
                dir: 0,
                name: "b".into(),
                dev: 1,
                ino: 3,
            },
            Entry::Rename {
                from_dir: 0,
                from: "c".into(),
                to_dir: 1,
                to: "e".into(),
                dev: 1,
                ino: 4,
            },
        ],
        locks: vec![
            Name {
                dir: 0,
                name: "a.lock".into(),
            },
            Name {
                dir: 1,
                name: "e.lock".into(),
            },
        ],
    };
    let bytes = j.encode();
    assert_eq!(Journal::decode(&bytes).unwrap(), j);
    for len in 0..bytes.len() {
        assert!(
            Journal::decode(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            assert!(Journal::decode(&b).is_err(), "bit {bit} of byte {i}");
        }
    }
    for _ in 0..2000 {
        let n = fastrand::usize(0..200);
        let junk: Vec<u8> = (0..n).map(|_| fastrand::u8(..)).collect();
        assert!(Journal::decode(&junk).is_err());
    }
}

/// The seeds of the decoder's fuzz target, made from this version's encoder (regenerate them
/// with `UNTORN_REGEN_SEEDS=1 cargo test -p untorn --lib fuzz_seeds`).
fn seed_journals() -> Vec<(&'static str, Vec<u8>)> {
    use crate::txn::journal::{Dir, Name};
    let dir = |ino, path: &str| Dir {
        dev: 2049,
        ino,
        path: PathBuf::from(path),
    };
    let put = |d, n: &str, ino| Entry::Put {
        dir: d,
        temp: format!(".{n}.untorn-0badc0de.tmp").into(),
        target: n.into(),
        dev: 2049,
        ino,
        size: 17,
        crc: 0x1234_5678,
    };
    let lock = |d, n: &str| Name {
        dir: d,
        name: format!("{n}.lock").into(),
    };
    let one = Journal {
        id: [1; 16],
        dirs: vec![dir(100, "/srv/state")],
        entries: vec![put(0, "a.json", 5)],
        locks: vec![lock(0, "a.json")],
    };
    let mixed = Journal {
        id: [2; 16],
        dirs: vec![dir(100, "/srv/state"), dir(101, "/srv/state/archive")],
        entries: vec![
            put(0, "a.json", 5),
            Entry::Remove {
                dir: 0,
                name: "old.txt".into(),
                dev: 2049,
                ino: 6,
            },
            Entry::Rename {
                from_dir: 0,
                from: "draft.md".into(),
                to_dir: 1,
                to: "final.md".into(),
                dev: 2049,
                ino: 7,
            },
        ],
        locks: vec![
            lock(0, "a.json"),
            lock(0, "draft.md"),
            lock(0, "old.txt"),
            lock(1, "final.md"),
        ],
    };
    let remove = Journal {
        id: [3; 16],
        dirs: vec![dir(100, "/srv/state")],
        entries: vec![Entry::Remove {
            dir: 0,
            name: "gone.yaml".into(),
            dev: 2049,
            ino: 8,
        }],
        locks: vec![lock(0, "gone.yaml")],
    };
    let empty = Journal {
        id: [4; 16],
        dirs: vec![dir(100, "/srv/state")],
        ..Journal::default()
    };
    let mut out = vec![
        ("one_put.journal", one.encode()),
        ("put_rm_mv.journal", mixed.encode()),
        ("remove_only.journal", remove.encode()),
        ("empty.journal", empty.encode()),
    ];
    // Hostile, yet checksummed: names that walk out of their directory must not decode.
    for (file, bad) in [
        ("hostile_dotdot.journal", "../../etc/passwd"),
        ("hostile_absolute.journal", "/etc/shadow"),
    ] {
        let mut j = one.clone();
        if let Entry::Put { target, .. } = &mut j.entries[0] {
            *target = bad.into();
        }
        out.push((file, j.encode()));
    }
    // Journals bound to the simulated shared directory of the fuzz target (`/d`, inode 2 on
    // device 1), naming its outside directory (`/o`, inode 3) and the inodes it plants there:
    // what recovery must never act on.
    let sim_dir = |ino, path: &str| Dir {
        dev: 1,
        ino,
        path: PathBuf::from(path),
    };
    let a2 = b"{\"a\": 2}";
    let sim_put_a = Entry::Put {
        dir: 0,
        temp: ".a.json.untorn-0badc0de.tmp".into(),
        target: "a.json".into(),
        dev: 1,
        ino: SIM_TEMP_INO,
        size: a2.len() as u64,
        crc: crc32fast::hash(a2),
    };
    out.push((
        "sim_names_outside.journal",
        Journal {
            id: [5; 16],
            dirs: vec![sim_dir(2, "/d"), sim_dir(3, "/o")],
            entries: vec![
                sim_put_a.clone(),
                Entry::Put {
                    dir: 1,
                    temp: ".secret.untorn-00000000.tmp".into(),
                    target: "secret".into(),
                    dev: 1,
                    ino: 5,
                    size: 15,
                    crc: crc32fast::hash(b"an outside temp"),
                },
                Entry::Remove {
                    dir: 1,
                    name: "config.json".into(),
                    dev: 1,
                    ino: 6,
                },
            ],
            locks: vec![lock(0, "a.json"), lock(1, "config.json")],
        }
        .encode(),
    ));
    out.push((
        "sim_one_dir.journal",
        Journal {
            id: [6; 16],
            dirs: vec![sim_dir(2, "/d")],
            entries: vec![sim_put_a],
            locks: vec![lock(0, "a.json")],
        }
        .encode(),
    ));
    let full = mixed.encode();
    out.push(("truncated.journal", full[..full.len() / 2].to_vec()));
    out.push(("zeros.journal", vec![0u8; 64]));
    out
}

/// The inode of `/d/.a.json.untorn-0badc0de.tmp` in [`hostile_sim`].
const SIM_TEMP_INO: u64 = 9;

/// The simulated shared directory of the journal fuzz target: `/d` (sticky) with a file, its
/// temp and a flag, `/o` beside it with files a journal may name, and the journal `bytes`
/// planted in `/d` by `owner`. Runs `recover /d`; returns the tree before and after.
fn hostile_sim(bytes: &[u8], owner: u32) -> (crate::sys::sim::Tree, crate::sys::sim::Tree) {
    use crate::sys::sim::Sim;
    let sim = Sim::default();
    sim.mkdir(Path::new("/d"));
    sim.mkdir(Path::new("/o"));
    sim.chmod_dir(Path::new("/d"), 0o1777);
    sim.put(Path::new("/o/secret"), b"outside");
    sim.put(
        Path::new("/o/.secret.untorn-00000000.tmp"),
        b"an outside temp",
    );
    sim.put(Path::new("/o/config.json"), b"{}");
    sim.put(Path::new("/o/config.json.lock"), &[0u8]);
    sim.put(Path::new("/d/a.json"), b"{\"a\": 1}");
    sim.put(Path::new("/d/.a.json.untorn-0badc0de.tmp"), b"{\"a\": 2}");
    let j = Path::new("/d/.untorn-txn-0001.journal");
    sim.put(j, bytes);
    sim.chown(j, owner);
    sim.put(Path::new("/d/a.json.lock"), &[0u8]);
    sim.chown(Path::new("/d/a.json.lock"), owner);
    let before = sim.volatile();
    let mut opts = RecoverOptions::new();
    opts.sys(Arc::new(sim.clone()));
    let _ = recover(Path::new("/d"), &opts);
    (before, sim.volatile())
}

/// What the journal fuzz target checks for every journal, here for the seeds (every cargo
/// test): recovery never changes a directory that holds no copy of the journal, and another
/// user's journal changes nothing; a journal of the caller's own, bound to `/d`, is recovered.
#[test]
fn hostile_journals_never_reach_a_directory_without_their_copy() {
    let outside = |t: &crate::sys::sim::Tree| {
        t.names(Path::new("/o"))
            .into_iter()
            .map(|n| (n.clone(), t.read(&Path::new("/o").join(n))))
            .collect::<Vec<_>>()
    };
    let mut rolled_forward = 0;
    for (name, bytes) in seed_journals() {
        for owner in [0, 65534] {
            let (before, after) = hostile_sim(&bytes, owner);
            assert_eq!(outside(&before), outside(&after), "{name}, owner {owner}");
            if owner != 0 {
                assert_eq!(
                    before.read(Path::new("/d/a.json")),
                    after.read(Path::new("/d/a.json"))
                );
                assert!(after
                    .read(Path::new("/d/.untorn-txn-0001.journal"))
                    .is_some());
            } else if after.read(Path::new("/d/a.json")).as_deref() == Some(b"{\"a\": 2}") {
                rolled_forward += 1;
                assert_eq!(name, "sim_one_dir.journal");
            }
        }
    }
    assert_eq!(
        rolled_forward, 1,
        "the caller's own journal bound to /d rolls forward"
    );
}

#[test]
fn the_fuzz_seeds_are_valid_journals_of_this_version() {
    // The decoder's fuzz target starts from these: they must reach past the checksum.
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/journal_decode");
    if std::env::var_os("UNTORN_REGEN_SEEDS").is_some() {
        for e in fs::read_dir(&seeds).unwrap() {
            fs::remove_file(e.unwrap().path()).unwrap();
        }
        for (name, bytes) in seed_journals() {
            fs::write(seeds.join(name), bytes).unwrap();
        }
    }
    let mut n = 0;
    for e in fs::read_dir(&seeds).unwrap() {
        let p = e.unwrap().path();
        let bytes = fs::read(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if ["truncated", "zeros", "hostile"]
            .iter()
            .any(|k| name.starts_with(k))
        {
            assert!(Journal::decode(&bytes).is_err(), "{name} should not decode");
            continue;
        }
        let j = Journal::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(j.encode(), bytes, "{name}");
        n += 1;
    }
    assert!(n >= 4, "valid seeds missing in {}", seeds.display());
}
