//! A linearizability checker in the style of Wing & Gong, with Lowe's memoisation
//! of (linearized set, state) as in Porcupine.
//!
//! A history is a set of operations with call and return times from one
//! monotonic clock. It is linearizable if the operations can be ordered so that
//! each takes effect at one instant between its call and return and the sequence
//! is legal for the model. An operation whose outcome the client never learned
//! (a timeout) gets `ret = u64::MAX`: it may take effect at any later point, or
//! effectively never.

use std::collections::HashSet;
use std::hash::Hash;

pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    type Output;
    fn init(&self) -> Self::State;
    /// The state after applying `input` that produced `output`, or None if that
    /// output is impossible in `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;
}

#[derive(Clone, Debug)]
pub struct Operation<I, O> {
    pub call: u64,
    pub ret: u64,
    pub input: I,
    pub output: O,
}

/// A versioned register, as one key of the metadata store: value and version.
pub struct VersionedRegister;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterInput {
    Read,
    Write(i64),
    /// Write `new` only if the version equals `expected_version`.
    Cas {
        expected_version: i64,
        new: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutput {
    /// A read's answer: (value, version); (None, 0) when the key is absent.
    Read(Option<i64>, i64),
    Written,
    Cas(bool),
    /// The client does not know whether the write took effect.
    Unknown,
}

impl Model for VersionedRegister {
    type State = (Option<i64>, i64);
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> Self::State {
        (None, 0)
    }

    fn step(
        &self,
        s: &Self::State,
        input: &RegisterInput,
        output: &RegisterOutput,
    ) -> Option<Self::State> {
        let (_, version) = *s;
        match (input, output) {
            (RegisterInput::Read, RegisterOutput::Read(v, ver)) => {
                (*v == s.0 && *ver == version).then_some(*s)
            }
            (RegisterInput::Read, RegisterOutput::Unknown) => Some(*s),
            (RegisterInput::Write(v), RegisterOutput::Written | RegisterOutput::Unknown) => {
                Some((Some(*v), version + 1))
            }
            (
                RegisterInput::Cas {
                    expected_version,
                    new,
                },
                RegisterOutput::Cas(ok),
            ) => {
                let holds = *expected_version == version;
                if holds != *ok {
                    None
                } else if holds {
                    Some((Some(*new), version + 1))
                } else {
                    Some(*s)
                }
            }
            (
                RegisterInput::Cas {
                    expected_version,
                    new,
                },
                RegisterOutput::Unknown,
            ) => {
                // Placed here, it either applied (if it could) or it never happens;
                // the latter is covered by placing it last.
                if *expected_version == version {
                    Some((Some(*new), version + 1))
                } else {
                    Some(*s)
                }
            }
            _ => None,
        }
    }
}

/// True if the history is linearizable for `model`.
///
/// A depth-first search over orders of the operations (Wing & Gong), with
/// Lowe's memo of (operations placed, state) configurations already explored.
/// The search keeps its own stack: a history is thousands of operations long
/// on a fast machine, and one call frame per placed operation overflowed a
/// test thread's stack in debug builds.
pub fn check<M: Model>(model: &M, history: &[Operation<M::Input, M::Output>]) -> bool {
    let n = history.len();
    let mut done = vec![false; n];
    let mut memo: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    // `placed[d]` is the operation placed at depth d; `frames[d]` searches
    // for the operation to place after the first d.
    let mut placed: Vec<usize> = Vec::new();
    let mut frames: Vec<Frame<M::State>> = Vec::new();
    let mut entering = Some(model.init());
    loop {
        if let Some(state) = entering.take() {
            if placed.len() == n {
                return true;
            }
            if memo.insert((bits(&done), state.clone())) {
                frames.push(Frame {
                    min_ret: min_pending_return(history, &done),
                    state,
                    next: 0,
                });
            } else if let Some(i) = placed.pop() {
                // This configuration was already explored and failed.
                done[i] = false;
            }
        }
        let Some(top) = frames.last_mut() else {
            return false;
        };
        let mut child = None;
        while child.is_none() && top.next < n {
            let i = top.next;
            top.next += 1;
            // An operation may go next only if it was called before every
            // pending operation returned (otherwise that one must come first).
            if done[i] || history[i].call > top.min_ret {
                continue;
            }
            child = model
                .step(&top.state, &history[i].input, &history[i].output)
                .map(|s| (i, s));
        }
        match child {
            Some((i, next)) => {
                done[i] = true;
                placed.push(i);
                entering = Some(next);
            }
            None => {
                frames.pop();
                if let Some(i) = placed.pop() {
                    done[i] = false;
                }
            }
        }
    }
}

/// One level of the search: the state after the operations placed so far,
/// the earliest return among the operations not placed, and the next
/// operation to try.
struct Frame<S> {
    state: S,
    min_ret: u64,
    next: usize,
}

fn min_pending_return<I, O>(history: &[Operation<I, O>], done: &[bool]) -> u64 {
    history
        .iter()
        .zip(done)
        .filter(|(_, d)| !**d)
        .map(|(op, _)| op.ret)
        .min()
        .unwrap_or(u64::MAX)
}

fn bits(done: &[bool]) -> Vec<u64> {
    let mut v = vec![0u64; done.len().div_ceil(64)];
    for (i, d) in done.iter().enumerate() {
        if *d {
            v[i / 64] |= 1 << (i % 64);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use RegisterInput as I;
    use RegisterOutput as O;

    fn op(call: u64, ret: u64, input: I, output: O) -> Operation<I, O> {
        Operation {
            call,
            ret,
            input,
            output,
        }
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        let h = vec![
            op(0, 10, I::Write(1), O::Written),
            op(1, 2, I::Read, O::Read(Some(1), 1)),
            op(3, 4, I::Read, O::Read(None, 0)),
        ];
        // The second read returned None after the first saw 1: stale, not linearizable.
        assert!(!check(&VersionedRegister, &h));
        let h = vec![
            op(0, 10, I::Write(1), O::Written),
            op(1, 2, I::Read, O::Read(None, 0)),
            op(3, 4, I::Read, O::Read(Some(1), 1)),
        ];
        assert!(check(&VersionedRegister, &h));
    }

    #[test]
    fn two_successful_cas_on_one_version_are_caught() {
        let h = vec![
            op(
                0,
                5,
                I::Cas {
                    expected_version: 0,
                    new: 1,
                },
                O::Cas(true),
            ),
            op(
                1,
                6,
                I::Cas {
                    expected_version: 0,
                    new: 2,
                },
                O::Cas(true),
            ),
        ];
        assert!(!check(&VersionedRegister, &h));
    }

    #[test]
    fn unknown_outcome_may_or_may_not_apply() {
        let h = vec![
            op(0, u64::MAX, I::Write(7), O::Unknown),
            op(5, 6, I::Read, O::Read(None, 0)),
            op(7, 8, I::Read, O::Read(Some(7), 1)),
        ];
        assert!(check(&VersionedRegister, &h));
        let h = vec![
            op(0, 1, I::Write(7), O::Written),
            op(5, 6, I::Read, O::Read(None, 0)),
        ];
        assert!(!check(&VersionedRegister, &h));
    }

    fn sequential(inputs: &[(u8, i64)]) -> Vec<Operation<I, O>> {
        let m = VersionedRegister;
        let mut s = m.init();
        let mut out = Vec::new();
        for (t, (kind, v)) in inputs.iter().enumerate() {
            let (input, output) = match kind % 3 {
                0 => (I::Read, O::Read(s.0, s.1)),
                1 => (I::Write(*v), O::Written),
                _ => {
                    let expected_version = v.rem_euclid(3);
                    (
                        I::Cas {
                            expected_version,
                            new: *v,
                        },
                        O::Cas(expected_version == s.1),
                    )
                }
            };
            s = m.step(&s, &input, &output).expect("legal by construction");
            out.push(op(2 * t as u64, 2 * t as u64 + 1, input, output));
        }
        out
    }

    #[test]
    fn long_histories_need_no_deep_stack() {
        // One call frame per placed operation overflowed the stack with the
        // thousands of operations a fast machine records; the search's depth
        // now lives on the heap.
        let inputs: Vec<(u8, i64)> = (0..3_000)
            .map(|i| ((i % 7) as u8, (i % 5) as i64 - 2))
            .collect();
        let h = sequential(&inputs);
        let checked = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || check(&VersionedRegister, &h))
            .unwrap()
            .join()
            .unwrap();
        assert!(checked);
    }

    proptest! {
        #[test]
        fn sequential_histories_are_linearizable(inputs in prop::collection::vec((any::<u8>(), -5i64..5), 1..40)) {
            prop_assert!(check(&VersionedRegister, &sequential(&inputs)));
        }

        #[test]
        fn a_wrong_read_in_a_sequential_history_is_caught(inputs in prop::collection::vec((any::<u8>(), -5i64..5), 1..40), pick in any::<prop::sample::Index>()) {
            let mut h = sequential(&inputs);
            let reads: Vec<usize> = (0..h.len()).filter(|i| matches!(h[*i].output, O::Read(..))).collect();
            prop_assume!(!reads.is_empty());
            let i = reads[pick.index(reads.len())];
            if let O::Read(_, ver) = h[i].output {
                h[i].output = O::Read(Some(1000), ver);
            }
            prop_assert!(!check(&VersionedRegister, &h));
        }
    }
}
