//! The parser never panics: a deterministic random-mutation loop over valid
//! configs (byte flips, deletions, insertions of YAML-significant text,
//! line shuffles) plus random token soup. Every case must return Ok or Err.

mod common;

use std::panic;

use vmbuild_config::{parse_str, LoadOptions};

const SEEDS: &[&str] = &[
    include_str!("../../../examples/hello/vmbuild.yaml"),
    r#"
package:
  name: fuzz
  version: 1.10
  epoch: 2
  timeout: 1h30m
  resources: { cpu: 2, memory: 1.5Gi }
environment:
  contents:
    packages: [python3, "gcc=4:12"]
  environment: { A: "${{package.name}}" }
vars: { v: x, w: "${{vars.v}}y" }
pipeline:
  - name: a
    if: (${{vars.v}} == 'x' && !false) || ${{vars.w}} != "q"
    working-directory: src/../b
    environment: { B: '1' }
    timeout: 30s
    runs: |
      echo ${{targets.destdir}}
  - &anc
    pipeline:
      - uses: test/echo
        with: { message: "${{vars.w}}" }
      - uses: maven/configure-mirror
  - <<: *anc
    name: merged
"#,
];

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "${{",
    "}}",
    "${{vars.v}}",
    "${{inputs.x}}",
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "  ",
    "'",
    "\"",
    "|",
    ">",
    "&a ",
    "*a",
    "<<: ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "#",
    "---\n",
    "...",
    "!!str ",
    "!tag ",
    "?",
    "\t",
    "==",
    "!=",
    "&&",
    "||",
    "(",
    ")",
    "!",
    "uses: ",
    "runs: ",
    "pipeline:",
    "with:",
    "if: ",
    "../",
    "/",
    "é",
    "\u{0}",
    "\r",
    "\\",
    "%YAML 1.2\n",
    "working-directory: ",
    "timeout: ",
    "memory: ",
    "99999999999999999999",
    "-1",
    "0",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut bytes: Vec<u8> = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = at.min(bytes.len() - 1);
                bytes[i] = (rng.next() & 0x7f) as u8;
            }
            1 if !bytes.is_empty() => {
                let end = (at + 1 + rng.below(12)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            2 | 3 => {
                let piece = PIECES[rng.below(PIECES.len())];
                bytes.splice(at..at, piece.bytes());
            }
            4 => {
                // Duplicate a slice somewhere else.
                let a = rng.below(bytes.len() + 1);
                let b = (a + rng.below(40)).min(bytes.len());
                let slice: Vec<u8> = bytes[a..b].to_vec();
                bytes.splice(at..at, slice);
            }
            _ => {
                // Swap two lines.
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<&str> = s.lines().collect();
                if lines.len() > 1 {
                    let i = rng.below(lines.len());
                    let j = rng.below(lines.len());
                    lines.swap(i, j);
                }
                bytes = lines.join("\n").into_bytes();
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn soup(rng: &mut Rng) -> String {
    (0..rng.below(60))
        .map(|_| PIECES[rng.below(PIECES.len())])
        .collect()
}

#[test]
fn parser_never_panics_on_mutated_input() {
    // Keep the default panic hook quiet only for what we catch.
    let opts = LoadOptions::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut errs) = (0usize, 0usize);
    for case in 0..20_000 {
        let text = if case % 5 == 4 {
            soup(&mut rng)
        } else {
            let seed = SEEDS[case % SEEDS.len()];
            // Mutate repeatedly sometimes, to wander further from valid.
            let mut t = mutate(&mut rng, seed);
            for _ in 0..rng.below(3) {
                t = mutate(&mut rng, &t);
            }
            t
        };
        let result = panic::catch_unwind(|| parse_str("fuzz.yaml", &text, &opts));
        match result {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                let msg = e.to_string();
                assert!(
                    !msg.contains('\n'),
                    "multi-line error for case {case}: {msg}"
                );
                if let Some(at) = e.location() {
                    assert!(
                        at.line >= 1 && at.col >= 1,
                        "bad location {at} for case {case}"
                    );
                }
                errs += 1;
            }
            Err(_) => panic!("parser panicked on case {case}:\n{text:?}"),
        }
    }
    // The loop really exercised both outcomes.
    eprintln!("fuzz: {ok} ok, {errs} errors");
    assert!(ok > 500 && errs > 5000, "ok={ok} errs={errs}");
}
