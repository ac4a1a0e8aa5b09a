//! The one wait helper: every "wait until …" in kubeha asks its condition again at a
//! fixed interval until it holds or the time is up, and a timeout says why the condition
//! last did not hold, so each wait polls, gives up and explains itself the same way.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// What one look at a condition found.
#[derive(Debug, PartialEq, Eq)]
pub enum Check<T> {
    /// It holds; the wait returns this.
    Done(T),
    /// Not yet, and why: the timeout's explanation if it is the last look.
    NotYet(String),
}

impl Check<()> {
    /// Done when nothing is `left`; otherwise not yet, naming what is left.
    pub fn none_left(left: &[String], separator: &str) -> Self {
        if left.is_empty() {
            Check::Done(())
        } else {
            Check::NotYet(left.join(separator))
        }
    }
}

/// Asks `check` every `every` until it is [`Check::Done`]. After `within`, the last
/// [`Check::NotYet`] reason becomes the error `timed_out` makes of it; an error from
/// `check` itself ends the wait at once.
pub async fn until<T, E, F, Fut>(
    within: Duration,
    every: Duration,
    check: F,
    timed_out: impl FnOnce(String) -> E,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Check<T>, E>>,
{
    looks(within, every, check).await?.map_err(timed_out)
}

/// For a condition worth waiting for but not required: whether it held within `within`,
/// asked every `every`.
pub async fn held_within<E, F, Fut>(
    within: Duration,
    every: Duration,
    mut check: F,
) -> Result<bool, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
{
    let look = || {
        let held = check();
        async move {
            Ok(if held.await? {
                Check::Done(())
            } else {
                Check::NotYet(String::new())
            })
        }
    };
    Ok(looks(within, every, look).await?.is_ok())
}

/// The looks themselves: what the condition found, or the last reason it did not hold.
async fn looks<T, E, F, Fut>(
    within: Duration,
    every: Duration,
    mut check: F,
) -> Result<Result<T, String>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Check<T>, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await? {
            Check::Done(value) => return Ok(Ok(value)),
            Check::NotYet(why) if Instant::now() >= deadline => return Ok(Err(why)),
            Check::NotYet(_) => tokio::time::sleep(every).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const EVERY: Duration = Duration::from_millis(500);

    #[tokio::test(start_paused = true)]
    async fn returns_what_the_condition_found_once_it_holds() {
        let looks = Cell::new(0);
        let started = Instant::now();
        let found = until(
            Duration::from_secs(10),
            EVERY,
            || async {
                looks.set(looks.get() + 1);
                Ok::<_, String>(if looks.get() < 3 {
                    Check::NotYet("not yet".into())
                } else {
                    Check::Done(looks.get())
                })
            },
            |why| why,
        )
        .await;
        assert_eq!(found, Ok(3));
        assert_eq!(
            started.elapsed(),
            EVERY * 2,
            "two waits between three looks"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_explains_the_last_look_and_a_failed_look_ends_the_wait() {
        let looks = Cell::new(0);
        let timed_out = until(
            Duration::from_secs(2),
            EVERY,
            || async {
                looks.set(looks.get() + 1);
                Ok::<Check<()>, String>(Check::NotYet(format!("look {}", looks.get())))
            },
            |why| format!("gave up: {why}"),
        )
        .await;
        // Looks at 0, 0.5, 1, 1.5 and 2 s: the last one is past the deadline.
        assert_eq!(timed_out, Err("gave up: look 5".to_string()));

        let failed = until(
            Duration::from_secs(60),
            EVERY,
            || async { Err::<Check<()>, _>("the API refused".to_string()) },
            |why| why,
        )
        .await;
        assert_eq!(failed, Err("the API refused".to_string()));
    }

    #[test]
    fn nothing_left_is_done_and_what_is_left_is_named() {
        assert_eq!(Check::none_left(&[], ", "), Check::Done(()));
        let left = ["a".to_string(), "b".to_string()];
        assert_eq!(Check::none_left(&left, "; "), Check::NotYet("a; b".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_condition_not_required_says_whether_it_held_in_time() {
        let started = Instant::now();
        let held = held_within(Duration::from_secs(2), EVERY, || async {
            Ok::<_, ()>(started.elapsed() >= Duration::from_secs(1))
        });
        assert_eq!(held.await, Ok(true));
        let never = held_within(Duration::from_secs(2), EVERY, || async {
            Ok::<_, ()>(false)
        });
        assert_eq!(never.await, Ok(false));
        assert_eq!(started.elapsed(), Duration::from_secs(3), "1 s, then 2 s");
    }
}
