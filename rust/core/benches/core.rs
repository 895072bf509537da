//! Criterion benchmarks of the hot paths. Quick: `cargo bench -p tenantgate-core`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tenantgate_core::{
    generate_key, Clock, Env, KeyHasher, Limiter, ParsedKey, Quota, Record, SystemClock, Verdict,
    Verifier, VerifierConfig,
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
