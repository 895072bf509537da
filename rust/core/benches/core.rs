//! Criterion benchmarks of the hot paths. Quick: `cargo bench -p tenantgate-core`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::atomic::AtomicU64;

use tenantgate_core::{
    generate_key, shared, Clock, Env, KeyHasher, Limit, Limiter, ParsedKey, Quota, Record,
    RequestContext, SlotStore, SystemClock, Verdict, Verifier, VerifierConfig,
};

fn benches(c: &mut Criterion) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let key = generate_key(Env::Live).unwrap_or_default();
    let header = format!("Bearer {key}");
    let pepper = [7u8; 32];

    c.bench_function("parse_key", |b| {
        b.iter(|| ParsedKey::parse(black_box(key.as_bytes())).is_ok());
    });

    let Ok(hasher) = KeyHasher::new(&pepper) else {
        return;
    };
    c.bench_function("hash_key", |b| {
        b.iter(|| hasher.hash(black_box(key.as_bytes())))
    });

    let Ok(verifier) = Verifier::new(&pepper, VerifierConfig::default(), clock.clone()) else {
        return;
    };
    let record = Record {
        tenant_id: "tenant".to_owned(),
        key_id: "key".to_owned(),
        expires_at: Some(4e9),
        usable: true,
        payload: 1u64,
        restriction: None,
    };
    let _ = verifier.insert(&verifier.hash(key.as_bytes()), record);
    c.bench_function("verify_hit", |b| {
        b.iter(|| {
            matches!(
                verifier.verify(black_box(header.as_bytes()), Some(b"api.example")),
                Verdict::Hit(_)
            )
        });
    });
    c.bench_function("verify_garbage", |b| {
        b.iter(|| verifier.verify(black_box(b"Bearer tg_live_not-a-key"), None));
    });

    let Ok(limiter) = Limiter::new(1_000_000, clock.clone()) else {
        return;
    };
    let Ok(quota) = Quota::new(1e9, 1_000_000) else {
        return;
    };
    c.bench_function("try_acquire", |b| {
        b.iter(|| {
            limiter
                .try_acquire(black_box("tenant-1234"), &quota, 1)
                .allowed
        });
    });
    // The same acquire on the fixed slot table (memory a caller could share between
    // processes), sized like the heap store above.
    let words: Vec<AtomicU64> = (0..SlotStore::<Vec<AtomicU64>>::words_for(1_000_000))
        .map(|_| AtomicU64::new(0))
        .collect();
    let Ok(store) = SlotStore::new(words, [1, 2, 3, 4]) else {
        return;
    };
    let slots = Limiter::with_store(store, clock.clone());
    c.bench_function("try_acquire_slots", |b| {
        b.iter(|| {
            slots
                .try_acquire(black_box("tenant-1234"), &quota, 1)
                .allowed
        });
    });

    // The host-wide table as `tenantgate serve` uses it: a header, then the slots, and
    // CLOCK_MONOTONIC from the table's origin (comparable across processes).
    let shared_words: Vec<AtomicU64> = (0..shared::words_for(65_536))
        .map(|_| AtomicU64::new(0))
        .collect();
    let Ok(shared_limiter) = shared::attach(&shared_words[..]) else {
        return;
    };
    c.bench_function("try_acquire_shared", |b| {
        b.iter(|| {
            shared_limiter
                .try_acquire(black_box("tenant-1234"), &quota, 1)
                .allowed
        });
    });
    let host_clock = shared_limiter.clock().clone();
    c.bench_function("clock_host_monotonic_ns", |b| {
        b.iter(|| host_clock.monotonic_ns())
    });

    // The one call per request: verify, then charge the record's cached bucket handle.
    let Ok(fused) = Verifier::new(&pepper, VerifierConfig::default(), clock.clone()) else {
        return;
    };
    let Ok(fused_quota) = Quota::new(1e9, 1_000_000) else {
        return;
    };
    let record = Record {
        tenant_id: "tenant".to_owned(),
        key_id: "key".to_owned(),
        expires_at: Some(4e9),
        usable: true,
        payload: Limit::new(Arc::new(fused_quota), "tenant".to_owned()),
        restriction: None,
    };
    let _ = fused.insert(&fused.hash(key.as_bytes()), record);
    c.bench_function("verify_and_acquire", |b| {
        b.iter(|| {
            matches!(
                fused.verify_and_acquire(
                    black_box(header.as_bytes()),
                    Some(b"api.example"),
                    &limiter,
                    1,
                    RequestContext::default(),
                    |_| ()
                ),
                Verdict::Hit(Ok(((), Ok(d)))) if d.allowed
            )
        });
    });
    c.bench_function("verify_and_acquire_shared", |b| {
        b.iter(|| {
            matches!(
                fused.verify_and_acquire(
                    black_box(header.as_bytes()),
                    Some(b"api.example"),
                    &shared_limiter,
                    1,
                    RequestContext::default(),
                    |_| ()
                ),
                Verdict::Hit(Ok(((), Ok(d)))) if d.allowed
            )
        });
    });
    c.bench_function("clock_monotonic_ns", |b| b.iter(|| clock.monotonic_ns()));
}

criterion_group! {
    name = core;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    targets = benches
}
criterion_main!(core);
