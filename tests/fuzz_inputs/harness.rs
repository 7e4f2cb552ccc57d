//! A small mutation fuzzer on top of proptest: each input is a seed (a valid or once-broken
//! input of the target) with a list of mutations (byte changes, dictionary tokens, deleted and
//! repeated runs, pieces of other seeds), so proptest can shrink a failure to the fewest
//! mutations. Runs are seeded (`CONVIRT_FUZZ_SEED`) and either one batch of cases (the
//! default, for `cargo test`) or batches until a time budget is spent (`CONVIRT_FUZZ_SECONDS`,
//! for CI and longer runs). A failing input is written to a file and named, so it can be
//! copied into the corpus, where every run replays it (docs/fuzzing.md).

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Far beyond any input's honest cost, even in a debug build on a busy machine: a case this
/// slow is a hang (as libFuzzer's `-timeout`), not a slow test.
const HANG: Duration = Duration::from_secs(20);
/// Inputs grow no larger than this.
const MAX_LEN: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub enum Mutation {
    /// Set one byte.
    Byte(Index, u8),
    /// Insert a dictionary token.
    Token(Index, Index),
    /// Delete a run of bytes.
    Delete(Index, u8),
    /// Repeat a run of bytes many times: deep nestings, long names, many entries.
    Repeat(Index, u8, u16),
    /// Insert a piece of another seed.
    Splice(Index, Index, Index, u8),
    /// Write an extreme number into a numeric field of a tar header (archive target only;
    /// elsewhere a no-op).
    TarField(Index, u8, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Mutation::Token(i, t)),
        2 => (any::<Index>(), 1..64u8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), 1..16u8, 2..600u16).prop_map(|(i, n, k)| Mutation::Repeat(i, n, k)),
        1 => (any::<Index>(), any::<Index>(), any::<Index>(), 1..128u8)
            .prop_map(|(i, s, f, n)| Mutation::Splice(i, s, f, n)),
        2 => (any::<Index>(), any::<u8>(), any::<u8>()).prop_map(|(h, f, v)| Mutation::TarField(h, f, v)),
    ]
}

/// One generated input: which seed, what to do to it, and a byte the target may use for a
/// choice of its own (an archive's compression layer).
#[derive(Debug, Clone)]
pub struct Input {
    pub seed: Index,
    pub mutations: Vec<Mutation>,
    pub choice: u8,
    /// Mutations applied after the target's own step (to the compressed bytes).
    pub outer: Vec<Mutation>,
}

fn input() -> impl Strategy<Value = Input> {
    (
        any::<Index>(),
        prop::collection::vec(mutation(), 0..6),
        any::<u8>(),
        prop::collection::vec(mutation(), 0..2),
    )
        .prop_map(|(seed, mutations, choice, outer)| Input {
            seed,
            mutations,
            choice,
            outer,
        })
}

/// Writes an extreme value into a numeric field of a tar header: header, field, value kind.
pub type TarField = fn(&mut [u8], &Index, u8, u8);

/// An input path to fuzz.
pub struct Target {
    pub name: &'static str,
    pub seeds: Vec<Vec<u8>>,
    pub dict: Vec<Vec<u8>>,
    /// Turns a generated input into the bytes to check; `None` means the plain mutation.
    pub build: Option<fn(&Target, &Input) -> Vec<u8>>,
    pub check: fn(&[u8]) -> Result<(), String>,
}

impl Target {
    /// Applies `muts` to `data`; tar fields through `tar_field`, when given.
    pub fn mutate(
        &self,
        mut data: Vec<u8>,
        muts: &[Mutation],
        tar_field: Option<TarField>,
    ) -> Vec<u8> {
        for m in muts {
            let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
            match m {
                Mutation::Byte(i, b) if !data.is_empty() => {
                    let n = i.index(data.len());
                    data[n] = *b;
                }
                Mutation::Byte(..) => data.push(0),
                Mutation::Token(i, t) if !self.dict.is_empty() => {
                    let tok = &self.dict[t.index(self.dict.len())];
                    let n = at(i, data.len());
                    data.splice(n..n, tok.iter().copied());
                }
                Mutation::Token(..) => {}
                Mutation::Delete(i, len) => {
                    let n = at(i, data.len());
                    let end = (n + *len as usize).min(data.len());
                    data.drain(n..end);
                }
                Mutation::Repeat(i, len, times) => {
                    let n = at(i, data.len());
                    let end = (n + *len as usize).min(data.len());
                    let piece = data[n..end].to_vec();
                    if !piece.is_empty() && data.len() + piece.len() * *times as usize <= MAX_LEN {
                        let more: Vec<u8> = piece.repeat(*times as usize);
                        data.splice(n..n, more);
                    }
                }
                Mutation::Splice(i, s, from, len) => {
                    let other = &self.seeds[s.index(self.seeds.len())];
                    if !other.is_empty() {
                        let f = from.index(other.len());
                        let end = (f + *len as usize).min(other.len());
                        let n = at(i, data.len());
                        data.splice(n..n, other[f..end].iter().copied());
                    }
                }
                Mutation::TarField(h, field, value) => {
                    if let Some(apply) = tar_field {
                        apply(&mut data, h, *field, *value);
                    }
                }
            }
            data.truncate(MAX_LEN);
        }
        data
    }

    fn bytes(&self, input: &Input) -> Vec<u8> {
        match self.build {
            Some(build) => build(self, input),
            None => {
                let seed = self.seeds[input.seed.index(self.seeds.len())].clone();
                self.mutate(seed, &input.mutations, None)
            }
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The regression corpus of a target: `tests/fixtures/fuzz/<name>/`.
pub fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(name)
}

pub fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(corpus_dir(name))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs the check, turning a panic into a failure.
fn checked(check: fn(&[u8]) -> Result<(), String>, data: &[u8]) -> Result<(), String> {
    let start = Instant::now();
    let r = std::panic::catch_unwind(|| check(data)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!("panicked: {msg}"))
    });
    let took = start.elapsed();
    if r.is_ok() && took > HANG {
        return Err(format!("took {took:?}: a hang"));
    }
    r
}

fn preview(data: &[u8]) -> String {
    let shown: String = data
        .iter()
        .take(600)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if data.len() > 600 {
        format!("{shown}... ({} bytes)", data.len())
    } else {
        shown
    }
}

/// Saves a failing input where the developer can pick it up, and says how.
fn save_failure(name: &str, data: &[u8]) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz-failures")
        .join(name);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("crash-{:016x}", h.finish()));
    let _ = std::fs::write(&path, data);
    path
}

/// Replays the corpus, then fuzzes: one batch, or batches until the time budget is spent.
pub fn run(target: Target) {
    for (path, data) in corpus(target.name) {
        if let Err(why) = checked(target.check, &data) {
            panic!(
                "regression input `{}` of target `{}` fails again: {why}\ninput: {}",
                path.display(),
                target.name,
                preview(&data)
            );
        }
    }
    assert!(
        !target.seeds.is_empty(),
        "target `{}` has no seed",
        target.name
    );
    let seconds = env_u64("CONVIRT_FUZZ_SECONDS").unwrap_or(0);
    let cases = env_u64("CONVIRT_FUZZ_CASES").unwrap_or(if seconds > 0 { 64 } else { 24 }) as u32;
    let base = env_u64("CONVIRT_FUZZ_SEED").unwrap_or(1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let name_hash = target.name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let mut batch = 0u64;
    let mut total = 0u64;
    loop {
        let seed = base.wrapping_mul(0x9e3779b97f4a7c15) ^ name_hash ^ batch;
        let config = Config {
            cases,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            max_shrink_iters: 2000,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let result = runner.run(&input(), |inp| {
            let data = target.bytes(&inp);
            checked(target.check, &data).map_err(TestCaseError::fail)
        });
        total += u64::from(cases);
        match result {
            Ok(()) => {}
            Err(TestError::Fail(why, inp)) => {
                let data = target.bytes(&inp);
                let saved = save_failure(target.name, &data);
                panic!(
                    "fuzz target `{}` failed (CONVIRT_FUZZ_SEED={base}, batch {batch}): {why}\n\
                     the input ({} bytes) is saved in `{}`; copy it into `{}/` to keep it as a \
                     regression test\ninput: {}",
                    target.name,
                    data.len(),
                    saved.display(),
                    corpus_dir(target.name).display(),
                    preview(&data)
                );
            }
            Err(TestError::Abort(why)) => panic!("fuzz target `{}` aborted: {why}", target.name),
        }
        batch += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    if seconds > 0 {
        eprintln!(
            "fuzz target `{}`: {total} inputs in {batch} batches, no failure",
            target.name
        );
    }
}
