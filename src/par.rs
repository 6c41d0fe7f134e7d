//! One way to run work on several threads: a scoped pool that maps items to results, in order.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    thread,
};

/// Maps `f` over `items` with at most `workers` threads; results come back in `items`' order.
/// A panicking call is re-raised in the caller once the others are done.
pub fn map<T: Sync, R: Send>(items: &[T], workers: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if workers <= 1 || items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut slots: Vec<(usize, R)> = thread::scope(|s| {
        let handles: Vec<_> = (0..workers.clamp(1, items.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    slots.sort_by_key(|(i, _)| *i);
    slots.into_iter().map(|(_, r)| r).collect()
}

/// Runs `f` on every item at once, one thread each (targets: each may block on its own server).
pub fn each<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    map(items, items.len(), f)
}

/// [`each`], where a call that panics (a bug in a storage client, say) fails its own item with
/// the panic's message and the other items go on.
pub fn each_caught<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
) -> Vec<Result<R, String>> {
    each(items, |item| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(item))).map_err(|p| {
            p.downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| p.downcast_ref::<String>().cloned())
                .map_or_else(|| "panicked".to_string(), |m| format!("panicked: {m}"))
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_input_order() {
        let v: Vec<u64> = (0..100).collect();
        assert_eq!(
            super::map(&v, 3, |x| x * 2),
            (0..100).map(|x| x * 2).collect::<Vec<_>>()
        );
        assert!(super::map(&[] as &[u8], 4, |x| *x).is_empty());
    }

    #[test]
    fn a_panic_fails_its_own_item_only() {
        let r = super::each_caught(&[1, 2, 3], |x| {
            assert!(*x != 2, "two is out");
            x * 10
        });
        assert_eq!(r[0], Ok(10));
        assert_eq!(r[1], Err("panicked: two is out".to_string()));
        assert_eq!(r[2], Ok(30));
    }
}
