//! Spreading requests over endpoints: at most `concurrency` in flight per endpoint, failed
//! attempts retried with exponential backoff on another endpoint when there is one.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::RemoteError;

/// How one attempt at a request failed.
#[derive(Debug)]
pub enum Failure {
    /// Worth another try (timeout, refused connection, 5xx, 429): `url` and why.
    Transient(String, String),
    /// Final (4xx, a malformed answer).
    Fatal(RemoteError),
}

/// Retry and concurrency limits of a [`run_all`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Endpoints to spread over.
    pub endpoints: usize,
    /// Requests in flight per endpoint.
    pub concurrency: usize,
    /// Attempts per request after the first.
    pub retries: usize,
    /// Wait before the first retry; doubled each time, at most 16 times as long.
    pub backoff: Duration,
}

/// A request waiting for a worker.
struct Queued {
    item: usize,
    /// Attempts made so far.
    tries: usize,
    /// The endpoint of the last failed attempt, which a retry avoids when another can take it.
    failed_on: Option<usize>,
}

struct State<T> {
    queue: VecDeque<Queued>,
    results: Vec<Option<T>>,
    pending: usize,
    /// The first final error, and the item it stopped.
    error: Option<(usize, RemoteError)>,
}

/// Runs `attempt(item, endpoint)` for items `0..count` and returns the results in item order,
/// or the first final error.
pub fn run_all<T: Send>(
    count: usize,
    limits: Limits,
    attempt: impl Fn(usize, usize) -> Result<T, Failure> + Sync,
) -> Result<Vec<T>, RemoteError> {
    run_all_items(count, limits, attempt).map_err(|(_, error)| error)
}

/// [`run_all`], whose error also says which item failed.
pub fn run_all_items<T: Send>(
    count: usize,
    limits: Limits,
    attempt: impl Fn(usize, usize) -> Result<T, Failure> + Sync,
) -> Result<Vec<T>, (usize, RemoteError)> {
    let state = Mutex::new(State {
        queue: (0..count).map(|item| Queued { item, tries: 0, failed_on: None }).collect(),
        results: (0..count).map(|_| None).collect(),
        pending: count,
        error: None,
    });
    let changed = Condvar::new();
    let workers = (limits.endpoints * limits.concurrency.max(1)).min(count);
    // Workers go round the endpoints, so with fewer workers than endpoints some have none.
    let served = limits.endpoints.min(workers);
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let (state, changed, attempt) = (&state, &changed, &attempt);
            let endpoint = Endpoint { index: worker % limits.endpoints, others_served: served > 1 };
            scope.spawn(move || work(endpoint, limits, (state, changed), attempt));
        }
    });
    let state = state.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    match state.error {
        Some(error) => Err(error),
        // Every item has a result once nothing is pending and no error was recorded.
        None => Ok(state.results.into_iter().flatten().collect()),
    }
}

/// The endpoint a worker sends to.
#[derive(Clone, Copy)]
struct Endpoint {
    index: usize,
    /// Whether some other endpoint has workers, so retries can leave this one.
    others_served: bool,
}

impl Endpoint {
    fn takes(self, queued: &Queued) -> bool {
        !self.others_served || queued.failed_on != Some(self.index)
    }
}

fn work<T>(
    endpoint: Endpoint,
    limits: Limits,
    (state, changed): (&Mutex<State<T>>, &Condvar),
    attempt: &impl Fn(usize, usize) -> Result<T, Failure>,
) {
    let lock = || state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let Queued { item, tries, .. } = {
            let mut guard = lock();
            loop {
                if guard.error.is_some() || guard.pending == 0 {
                    return;
                }
                let next = guard.queue.iter().position(|queued| endpoint.takes(queued));
                if let Some(next) = next.and_then(|position| guard.queue.remove(position)) {
                    break next;
                }
                guard = changed.wait(guard).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        let outcome = attempt(item, endpoint.index);
        let mut guard = lock();
        match outcome {
            Ok(value) => {
                guard.results[item] = Some(value);
                guard.pending -= 1;
            }
            Err(Failure::Fatal(error)) => {
                guard.error.get_or_insert((item, error));
            }
            Err(Failure::Transient(url, message)) if tries >= limits.retries => {
                guard.error.get_or_insert((item, RemoteError::Unreachable { url, attempts: tries + 1, message }));
            }
            Err(Failure::Transient(url, message)) => {
                drop(guard);
                let wait = limits.backoff * 2u32.pow(tries.min(4) as u32);
                tracing::warn!(
                    "{url}: {message}; retrying in {:.1}s ({} of {})",
                    wait.as_secs_f64(),
                    tries + 1,
                    limits.retries
                );
                std::thread::sleep(wait);
                guard = lock();
                guard.queue.push_back(Queued { item, tries: tries + 1, failed_on: Some(endpoint.index) });
            }
        }
        drop(guard);
        changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn limits(endpoints: usize, retries: usize) -> Limits {
        Limits { endpoints, concurrency: 2, retries, backoff: Duration::from_millis(1) }
    }

    #[test]
    fn results_come_back_in_item_order_and_use_every_endpoint() {
        let used: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        let got = run_all(40, limits(3, 0), |item, endpoint| {
            used[endpoint].fetch_add(1, Ordering::Relaxed);
            // Hold each request until every endpoint has taken one, so a worker that starts late
            // on a loaded machine cannot find the queue already empty (the deadline only bounds
            // a failing run).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while used.iter().any(|n| n.load(Ordering::Relaxed) == 0) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(item * 10)
        })
        .unwrap();
        assert_eq!(got, (0..40).map(|i| i * 10).collect::<Vec<_>>());
        assert!(used.iter().all(|n| n.load(Ordering::Relaxed) > 0));
    }

    #[test]
    fn a_transient_failure_is_retried_on_another_endpoint_until_it_succeeds() {
        // Endpoint 0 always fails; a retry never goes back to it while endpoint 1 has workers, so
        // one retry per item is enough for every item to be answered by endpoint 1.
        let got = run_all(6, limits(2, 1), |item, endpoint| match endpoint {
            0 => Err(Failure::Transient("http://down".into(), "connection refused".into())),
            _ => Ok(item),
        })
        .unwrap();
        assert_eq!(got, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn a_lone_worker_retries_on_its_own_endpoint_rather_than_waiting_for_one_without_workers() {
        // One item gives one worker, on endpoint 0; endpoints 1 and 2 have none to retry on.
        let calls = AtomicUsize::new(0);
        let got = run_all(1, limits(3, 2), |item, endpoint| {
            assert_eq!(endpoint, 0);
            match calls.fetch_add(1, Ordering::Relaxed) {
                0 | 1 => Err(Failure::Transient("http://busy".into(), "503".into())),
                _ => Ok(item),
            }
        })
        .unwrap();
        assert_eq!(got, vec![0]);
    }

    #[test]
    fn retries_run_out_into_an_error_naming_the_url_and_attempts() {
        let err = run_all(3, limits(1, 2), |_, _| -> Result<(), _> {
            Err(Failure::Transient("http://down/v1/chat/completions".into(), "timed out".into()))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "http://down/v1/chat/completions: no answer after 3 attempts; last: timed out");
    }

    #[test]
    fn the_error_names_the_item_that_failed() {
        let (item, _) = run_all_items(5, limits(1, 0), |item, _| match item {
            3 => Err(Failure::Fatal(RemoteError::NoEndpoints)),
            _ => Ok(item),
        })
        .unwrap_err();
        assert_eq!(item, 3);
    }

    #[test]
    fn a_fatal_failure_stops_at_once() {
        let calls = AtomicUsize::new(0);
        let err = run_all(50, limits(1, 5), |_, _| -> Result<(), _> {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(Failure::Fatal(RemoteError::Rejected { url: "u".into(), status: 400, message: "bad".into() }))
        })
        .unwrap_err();
        assert!(matches!(err, RemoteError::Rejected { status: 400, .. }));
        assert!(calls.load(Ordering::Relaxed) <= 2, "workers stop after the first fatal error");
    }
}
