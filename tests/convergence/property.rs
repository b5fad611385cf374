//! The property: whatever the interleaving of edits on the three sides, however deliveries
//! are duplicated, reordered and delayed and calls fail transiently, and even when someone
//! changes a side exactly between tagsync's read and its write there (`Step::Meanwhile`: the
//! simulator holds tagsync's write until the change is made), once the edits stop and the
//! faults clear the system goes quiet with the three sides in step, every such change of a
//! member's tags kept and carried everywhere, having run a bounded number of jobs, and stays
//! quiet. One thing is left to an operator, as the design says (docs/sync-engine.md, "Name
//! collisions"): two objects given one name on two sides, neither of which can go back, park
//! their jobs asking for one to be renamed; the operator does so in the hub and redrives
//! ([`operator_settles_clashes`]), and then the same holds.

use crate::drive::*;
use crate::model::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngSeed, TestCaseError, TestError, TestRunner,
};
use std::time::Instant;

fn env_num(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
    )
}

/// One case, on its own runtime and world.
fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(format!("tokio runtime: {e}")))?;
    rt.block_on(run_case_async(case))
}

async fn run_case_async(case: &Case) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let w = start().await;
    let members = seed(&w).await.map_err(TestCaseError::fail)?;
    let after_seed = w.activity();

    let mut d = Driver::new(&w, members);
    apply_chaos(&w, &case.chaos);
    let mut failure: Option<String> = None;
    for step in &case.steps {
        if let Err(e) = d.run(step).await {
            failure = Some(e);
            break;
        }
    }
    clear_chaos(&w);

    if failure.is_none() {
        if let Err(e) = d.settle("the final settle").await {
            failure = Some(e);
        }
    }
    d.disarm();
    // Two sides may give one name to two objects that cannot go back: an operator renames one.
    let mut operator = Vec::new();
    if failure.is_none() {
        match operator_settles_clashes(&w).await {
            Ok(done) => operator = done,
            Err(e) => failure = Some(e),
        }
    }
    if failure.is_none() {
        let mut problems = converged(&w, &d.members).await;
        problems.extend(expectation_problems(&w, &d.expectations()).await);
        if !problems.is_empty() {
            failure = Some(format!(
                "not converged:\n  - {}\n{}",
                problems.join("\n  - "),
                views(&w).await
            ));
        }
    }
    let jobs = jobs_since(&w, &after_seed);
    let bound = JOBS_PER_EDIT * (d.applied as u64 + operator.len() as u64 + 1);
    if failure.is_none() && jobs > bound {
        failure = Some(format!(
            "{jobs} jobs ran for {} edits (bound {bound}): an echo loop?",
            d.applied
        ));
    }
    if failure.is_none()
        && let Err(e) = stays_quiet(&w).await
    {
        failure = Some(e);
    }
    let summary = format!(
        "chaos {:?}; {} steps: {} edits applied, {} skipped; {} of {} changes made while \
         tagsync's write was held checked; {} clash(es) renamed by the operator; {jobs} jobs; \
         {:.1} s",
        case.chaos,
        case.steps.len(),
        d.applied,
        d.skipped,
        d.expectations().len(),
        d.expected.len(),
        operator.len(),
        started.elapsed().as_secs_f64()
    );
    let mut record = d.record();
    for line in &operator {
        record.push_str(&format!("\n  {line}"));
    }
    drop(d);
    let trail = if failure.is_some() && verbose() {
        format!("\naudit trail:\n{}", audit_trail(&w).await)
    } else {
        String::new()
    };
    w.stop().await;
    match failure {
        None => {
            eprintln!("case ok: {summary}");
            Ok(())
        }
        Some(f) => {
            eprintln!("case FAILED: {summary}");
            Err(TestCaseError::fail(format!(
                "{f}\n{summary}\nsteps as run:\n{record}{trail}"
            )))
        }
    }
}

/// Seeds of the cases that once failed (relative to the package root, where cargo runs the
/// test): commit new lines with the fix they led to.
const REGRESSIONS: &str = "tests/convergence/property.proptest-regressions";

#[test]
fn random_edits_on_three_sides_under_chaos_and_between_reads_and_writes_converge_keeping_every_change()
 {
    // `RUST_LOG=tagsync=debug` (say) shows what the jobs decided, with a failure's trail.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let cases = env_num("TAGSYNC_PROPTEST_CASES").unwrap_or(10) as u32;
    let seed = env_num("TAGSYNC_PROPTEST_SEED").unwrap_or_else(rand::random);
    let shrink = env_num("TAGSYNC_PROPTEST_SHRINK_ITERS").unwrap_or(32) as u32;
    let sides = sides_from_env();
    eprintln!(
        "convergence property: {cases} cases, seed {seed} (TAGSYNC_PROPTEST_SEED={seed} repeats \
         this run), sides {sides:?}"
    );
    let config = Config {
        cases,
        max_shrink_iters: shrink,
        // Cases that failed once are run first, every time (proptest keeps their seeds there;
        // a case is regenerated from its seed, so a change to `model`'s generators changes
        // which case a seed gives).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    match runner.run(&case(sides, 20), |c| run_case(&c)) {
        Ok(()) => {}
        Err(TestError::Fail(reason, minimal)) => {
            let steps: Vec<String> = minimal.steps.iter().map(|s| format!("  {s}")).collect();
            panic!(
                "the sides did not converge (seed {seed}).\n\
                 minimal failing case: chaos {:?}, steps:\n{}\n\
                 its last run:\n{reason}",
                minimal.chaos,
                steps.join("\n")
            );
        }
        Err(TestError::Abort(reason)) => {
            panic!("the property test gave up (seed {seed}): {reason}")
        }
    }
}
