//! The handles and offsets of runcast's run feeds in Electric's shape protocol, written by its
//! server and read by its client: a handle names the engine's history (its epoch, in hex) and,
//! on a tag feed, the start of its `createdAt` window (`<epoch>-<unix ms>`); an offset is the
//! position of the last change read (`<position>_0`). So an offset is a cursor, in the
//! history its handle names.

/// The handle of a feed over the history `epoch`, seen from `floor` (Unix ms) on, if given.
#[cfg(feature = "server")]
pub(crate) fn handle(epoch: u64, floor: Option<i64>) -> String {
    match floor {
        Some(floor) => format!("{epoch:x}-{floor}"),
        None => format!("{epoch:x}"),
    }
}

/// The epoch and window start a runcast handle names; `None` for another server's handle.
pub(crate) fn handle_parts(handle: &str) -> Option<(u64, Option<i64>)> {
    let (epoch, floor) = match handle.split_once('-') {
        Some((epoch, floor)) => (epoch, Some(floor)),
        None => (handle, None),
    };
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if epoch.is_empty() || epoch.len() > 16 || !epoch.bytes().all(hex) {
        return None;
    }
    let epoch = u64::from_str_radix(epoch, 16).ok().filter(|&e| e != 0)?;
    let floor = match floor {
        None => None,
        Some(floor) if !floor.is_empty() && floor.bytes().all(|b| b.is_ascii_digit()) => {
            Some(floor.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((epoch, floor))
}

/// The offset of the change at `position`.
pub(crate) fn offset(position: u64) -> String {
    format!("{position}_0")
}

/// The position a runcast offset names; `None` for anything else (`-1`, another server's).
pub(crate) fn position(offset: &str) -> Option<u64> {
    let position = offset.strip_suffix("_0")?;
    if position.is_empty() || !position.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    position.parse().ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn what_is_written_reads_back_and_nothing_else_panics(
            epoch in 1..=u64::MAX,
            floor in proptest::option::of(0..=i64::MAX),
            position: u64,
            text in ".{0,40}",
        ) {
            let written = match floor {
                Some(floor) => format!("{epoch:x}-{floor}"),
                None => format!("{epoch:x}"),
            };
            prop_assert_eq!(handle_parts(&written), Some((epoch, floor)));
            prop_assert_eq!(super::position(&offset(position)), Some(position));
            let _ = (handle_parts(&text), super::position(&text));
        }
    }

    #[test]
    fn other_servers_handles_and_offsets_are_not_runcast_s() {
        for other in [
            "",
            "0",
            "run-abc",
            "runs_1_2_x",
            "1f-",
            "1f-x",
            "G1",
            "1F",
            "1f--5",
        ] {
            assert_eq!(handle_parts(other), None, "{other:?}");
        }
        for other in [
            "", "-1", "_0", "1", "1_", "1_1", "+1_0", "1_0_0", "x_0", "0_inf", "42_2",
        ] {
            assert_eq!(position(other), None, "{other:?}");
        }
    }
}
