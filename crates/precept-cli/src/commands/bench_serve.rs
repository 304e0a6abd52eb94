//! `precept bench serve`: a bounded load test of an OpenAI-compatible server (`precept serve`,
//! llama.cpp's server, vLLM): N clients send greedy chat requests; throughput and latency
//! percentiles come out, and every request is accounted for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use precept_data::Message;
use precept_remote::wire::{ChatCompletion, ChatRequest};
use serde::Serialize;

use crate::output::{outln, print_json};

/// Prompts cycled through by the clients.
const PROMPTS: [&str; 8] = [
    "Give me three tips for a job interview.",
    "Explain how a rainbow forms.",
    "Write a short poem about the sea.",
    "What is the difference between a virus and a bacterium?",
    "How do I boil an egg?",
    "Summarise the plot of Romeo and Juliet.",
    "Why is the sky blue?",
    "Suggest a name for a bakery.",
];

/// `precept bench serve`
#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// The server's base URL (`http://127.0.0.1:8080`).
    #[arg(long)]
    pub url: String,
    /// The model name it serves.
    #[arg(long)]
    pub model: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 32)]
    pub requests: usize,
    /// New tokens per request.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Stop sending new requests after this many seconds (those in flight finish).
    #[arg(long, default_value_t = 600)]
    pub time_limit: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct LoadReport {
    url: String,
    clients: usize,
    requests: usize,
    sent: usize,
    completed: usize,
    failed: usize,
    first_failure: Option<String>,
    seconds: f64,
    requests_per_s: f64,
    completion_tokens: usize,
    completion_tokens_per_s: f64,
    latency_p50_s: f64,
    latency_p99_s: f64,
    latency_max_s: f64,
}

/// Runs the load test.
pub fn run(args: &BenchServeArgs) -> Result<()> {
    if args.clients == 0 || args.requests == 0 || args.max_tokens == 0 {
        bail!("--clients, --requests and --max-tokens must be at least 1");
    }
    let url = format!("{}/v1/chat/completions", args.url.trim_end_matches('/').trim_end_matches("/v1"));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(args.time_limit + 60)))
        .http_status_as_error(false)
        .build()
        .into();
    let request = |i: usize| ChatRequest {
        model: args.model.clone(),
        messages: vec![(&Message::user(PROMPTS[i % PROMPTS.len()])).into()],
        max_tokens: Some(args.max_tokens),
        temperature: Some(0.0),
        ..ChatRequest::default()
    };
    let send = |i: usize| -> Result<usize, String> {
        let mut response = agent.post(&url).send_json(request(i)).map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        let completion: ChatCompletion = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        Ok(completion.usage.map_or(0, |u| u.completion_tokens))
    };
    send(0).map_err(|e| anyhow::anyhow!("{url}: the warm-up request failed: {e}"))?;
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<(Duration, Result<usize, String>)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let limit = Duration::from_secs(args.time_limit);
    std::thread::scope(|scope| {
        for _ in 0..args.clients {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.requests || started.elapsed() > limit {
                    return;
                }
                let sent = Instant::now();
                let outcome = send(i);
                outcomes.lock().unwrap_or_else(|p| p.into_inner()).push((sent.elapsed(), outcome));
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut latencies: Vec<f64> = outcomes.iter().filter(|(_, o)| o.is_ok()).map(|(d, _)| d.as_secs_f64()).collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |q: f64| {
        latencies.get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN)
    };
    let completion_tokens: usize = outcomes.iter().filter_map(|(_, o)| o.as_ref().ok()).sum();
    let report = LoadReport {
        url: args.url.clone(),
        clients: args.clients,
        requests: args.requests,
        sent: outcomes.len(),
        completed: latencies.len(),
        failed: outcomes.len() - latencies.len(),
        first_failure: outcomes.iter().find_map(|(_, o)| o.as_ref().err().cloned()),
        seconds,
        requests_per_s: latencies.len() as f64 / seconds,
        completion_tokens,
        completion_tokens_per_s: completion_tokens as f64 / seconds,
        latency_p50_s: percentile(0.5),
        latency_p99_s: percentile(0.99),
        latency_max_s: latencies.last().copied().unwrap_or(f64::NAN),
    };
    if args.json {
        print_json(&report)?;
    } else {
        outln!(
            "{} clients, {}/{} requests completed ({} failed) in {:.1}s: {:.2} req/s, {:.1} completion tok/s, \
             latency p50 {:.2}s p99 {:.2}s",
            report.clients,
            report.completed,
            report.requests,
            report.failed,
            report.seconds,
            report.requests_per_s,
            report.completion_tokens_per_s,
            report.latency_p50_s,
            report.latency_p99_s
        )?;
    }
    if report.failed > 0 {
        bail!("{} requests failed; first: {}", report.failed, report.first_failure.unwrap_or_default());
    }
    Ok(())
}
