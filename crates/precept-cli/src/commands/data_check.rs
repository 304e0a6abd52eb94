//! `precept data check`: validate every record of a dataset and measure its token lengths.

use anyhow::{bail, Context, Result};
use precept_data::{OnMismatch, PreparationStats, PrepareOptions, SftPreparer, SftReader};
use serde::Serialize;

use crate::args::{DataCheckArgs, DataFormat, MismatchArg};
use crate::loaded::TextModel;
use crate::output::print_json;

#[derive(Serialize)]
struct CheckReport {
    file: String,
    errors: usize,
    #[serde(flatten)]
    stats: PreparationStats,
    /// Token-length percentiles of the prepared examples: p50, p90, p99, max.
    length_percentiles: [usize; 4],
    first_errors: Vec<String>,
}

/// Checks `args.file`; fails (exit code 1) when any record is invalid.
pub fn run(args: &DataCheckArgs) -> Result<()> {
    let DataFormat::Sft = args.format;
    let text_model = TextModel::open(&args.model)?;
    let tokenizer = &text_model.tokenizer;
    let template = tokenizer.chat_template().context("the model folder has no chat template")?;
    let options = PrepareOptions {
        max_length: args.max_length,
        on_mismatch: match args.on_mismatch {
            MismatchArg::Error => OnMismatch::Error,
            MismatchArg::Warn => OnMismatch::Warn,
        },
    };
    let mut preparer = SftPreparer::new(tokenizer, template, options);
    let (mut lengths, mut errors, mut first_errors) = (Vec::new(), 0usize, Vec::new());
    for (line, record) in SftReader::open(&args.file)? {
        let prepared = record.and_then(|record| preparer.prepare(&record, &args.file, line));
        match prepared {
            Ok(Some(example)) => lengths.push(example.len()),
            Ok(None) => {}
            Err(error) => {
                errors += 1;
                if first_errors.len() < args.show_errors {
                    first_errors.push(error.to_string());
                }
            }
        }
    }
    lengths.sort_unstable();
    let percentile = |q: f64| lengths.get(((lengths.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
    let report = CheckReport {
        file: args.file.display().to_string(),
        errors,
        stats: preparer.into_stats(),
        length_percentiles: [percentile(0.5), percentile(0.9), percentile(0.99), percentile(1.0)],
        first_errors,
    };
    if args.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    if errors > 0 {
        bail!("{}: {errors} invalid record(s)", report.file);
    }
    Ok(())
}

fn print_report(report: &CheckReport) {
    for error in &report.first_errors {
        println!("error: {error}");
    }
    let s = &report.stats;
    let [p50, p90, p99, max] = report.length_percentiles;
    println!("{}: {} records, {} examples, {} invalid", report.file, s.records, s.examples, report.errors);
    println!("tokens: {} ({} trained); length p50 {p50}, p90 {p90}, p99 {p99}, max {max}", s.tokens, s.trained_tokens);
    println!(
        "truncated {}, dropped for length {}, prompt/completion mismatches skipped {}",
        s.truncated,
        s.dropped_for_length,
        s.mismatches_skipped()
    );
}
