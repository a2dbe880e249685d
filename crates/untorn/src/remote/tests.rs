//! The remote operations on `object_store`'s in-memory store (which honours the same
//! conditions); the S3 server, the fault proxy and the CLI are tested in
//! `crates/untorn-cli/tests/remote*.rs`.

use super::*;
use object_store::memory::InMemory;
use std::sync::Arc;

/// A URL in a fresh in-memory bucket.
fn mem(name: &str) -> Url {
    let bucket = format!("mem-{name}");
    client::install(&bucket, Arc::new(InMemory::new()));
    Url::parse(&format!("s3://{bucket}/state.json")).unwrap()
}

#[test]
fn urls() {
    for bad in [
        "s3://",
        "s3://b/k",
        "s3://bucket",
        "s3://bucket/",
        "s3://Bucket/k",
        "s3://bucket/a//b",
        "s3://bucket/../k",
        "bucket/k",
    ] {
        let e = Url::parse(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}: {e}");
    }
    assert_eq!(
        Url::parse("gs://bucket/k").unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    let u = Url::parse("s3://my.bucket-1/a/b.json").unwrap();
    assert_eq!(u.to_string(), "s3://my.bucket-1/a/b.json");
    assert!(is_url("s3://b/k") && is_url("gs://x") && !is_url("./s3:/x") && !is_url("a.json"));
    assert!(!is_url("dir/x://y"), "a path with :// further on");
}

#[test]
fn write_read_create() {
    let u = mem("wrc");
    let o = RemoteOptions::new();
    assert_eq!(o.read(&u).unwrap(), None);
    o.create(&u, b"1").unwrap();
    assert_eq!(
        o.create(&u, b"2").unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    o.write(&u, b"3").unwrap();
    assert_eq!(o.read(&u).unwrap().as_deref(), Some(&b"3"[..]));
    o.check(&u, &crate::backup::Validator::Exists).unwrap();
}

#[cfg(feature = "json")]
#[test]
fn updates_from_threads_lose_nothing() {
    #[derive(serde::Serialize, serde::Deserialize, Clone, Default)]
    struct S {
        n: u64,
    }
    let u = mem("threads");
    let o = RemoteOptions::new();
    let conflicts = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    let mut runs = 0;
                    o.update_as(Format::Json, &u, S::default(), |s: &mut S| {
                        runs += 1;
                        s.n += 1;
                    })
                    .unwrap();
                    conflicts.fetch_add(runs - 1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let v: S = serde_json::from_slice(&o.read(&u).unwrap().unwrap()).unwrap();
    assert_eq!(v.n, 100);
}

#[test]
fn identical_output_writes_nothing() {
    let u = mem("same");
    let o = RemoteOptions::new();
    o.write(&u, b"{}").unwrap();
    let out = o
        .update(&u, |old| Ok::<_, Error>(old.map(<[u8]>::to_vec)))
        .unwrap();
    assert!(!out.written);
    assert_eq!(out.attempts, 0);
    let out = o.update(&u, |_| Ok::<_, Error>(None)).unwrap();
    assert!(!out.written);
}

#[test]
fn a_conflict_reruns_on_the_new_version() {
    let u = mem("conflict");
    let o = RemoteOptions::new();
    o.write(&u, b"a").unwrap();
    let mut first = true;
    let out = o
        .update(&u, |old| {
            if first {
                first = false;
                // Another writer replaces the object between this read and its write.
                RemoteOptions::new().write(&u, b"b")?;
            }
            let mut v = old.unwrap().to_vec();
            v.push(b'+');
            Ok::<_, Error>(Some(v))
        })
        .unwrap();
    assert_eq!(out.conflicts, 1);
    assert_eq!(o.read(&u).unwrap().as_deref(), Some(&b"b+"[..]));
    // Without retries: refused, nothing written.
    let mut first = true;
    let e = o
        .clone()
        .retry_conflicts(false)
        .update(&u, |old| {
            if first {
                first = false;
                RemoteOptions::new().write(&u, b"c")?;
            }
            Ok::<_, Error>(Some([old.unwrap(), b"!"].concat()))
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert_eq!(o.read(&u).unwrap().as_deref(), Some(&b"c"[..]));
}

#[test]
fn appends_keep_order_and_tail_reads_the_newest() {
    let u = mem("log");
    let o = RemoteOptions::new();
    assert!(o.read_log(&u, LogFormat::Lines).unwrap().records.is_empty());
    for i in 0..20 {
        o.append_all(&u, &[format!("r{i}"), format!("s{i}")], LogFormat::Lines)
            .unwrap();
    }
    let all = o.read_log(&u, LogFormat::Lines).unwrap().records;
    assert_eq!(all.len(), 40);
    assert_eq!(all[0], b"r0");
    assert_eq!(all[39], b"s19");
    let t = o.tail(&u, LogFormat::Lines, 3).unwrap().records;
    assert_eq!(t, vec![b"s18".to_vec(), b"r19".to_vec(), b"s19".to_vec()]);
}

#[test]
fn a_damaged_object_fails_its_check() {
    use object_store::{ObjectStore, PutPayload};
    let bucket = "mem-damaged";
    let store = Arc::new(InMemory::new());
    client::install(bucket, store.clone());
    let u = Url::parse(&format!("s3://{bucket}/a.json")).unwrap();
    // A version whose recorded checksum is not its content's.
    let mut attributes = object_store::Attributes::new();
    attributes.insert(
        object_store::Attribute::Metadata(lineage::SUM_KEY.into()),
        "crc32=00000000 size=2".to_string().into(),
    );
    client::block_on(store.put_opts(
        &object_store::path::Path::from("a.json"),
        PutPayload::from(b"{}".to_vec()),
        object_store::PutOptions {
            attributes,
            ..Default::default()
        },
    ))
    .unwrap();
    let e = RemoteOptions::new()
        .check(&u, &crate::backup::Validator::Exists)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidContent);
    assert!(e.to_string().contains("damaged"), "{e}");
}
