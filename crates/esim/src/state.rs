//! A profile's life on the SM-DP+ (GSMA SGP.22), and the transitions it
//! allows. The inventory follows the same states, so that what rollover
//! believes of a profile and what the SM-DP+ does never disagree on a rule.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProfileState {
    /// In stock: no order holds it.
    Available,
    /// Ordered without an EID (`downloadOrder`).
    Allocated,
    /// Ordered for one EID.
    Linked,
    /// Confirmed, not yet released for download (`releaseFlag` false).
    Confirmed,
    /// Ready for the phone to download.
    Released,
    /// The phone has downloaded it.
    Downloaded,
    /// The phone has installed it.
    Installed,
    /// The phone has deleted it.
    Deleted,
    /// Withdrawn from sale (`cancelOrder` to `Unavailable`).
    Unavailable,
    /// The SM-DP+ reported a failure it cannot recover from.
    Error,
}

impl ProfileState {
    pub const ALL: [ProfileState; 10] = [
        ProfileState::Available,
        ProfileState::Allocated,
        ProfileState::Linked,
        ProfileState::Confirmed,
        ProfileState::Released,
        ProfileState::Downloaded,
        ProfileState::Installed,
        ProfileState::Deleted,
        ProfileState::Unavailable,
        ProfileState::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProfileState::Available => "available",
            ProfileState::Allocated => "allocated",
            ProfileState::Linked => "linked",
            ProfileState::Confirmed => "confirmed",
            ProfileState::Released => "released",
            ProfileState::Downloaded => "downloaded",
            ProfileState::Installed => "installed",
            ProfileState::Deleted => "deleted",
            ProfileState::Unavailable => "unavailable",
            ProfileState::Error => "error",
        }
    }

    pub fn parse(name: &str) -> Option<ProfileState> {
        ProfileState::ALL.into_iter().find(|state| state.name() == name)
    }

    /// Whether the phone has it (or had it): an order can no longer be
    /// cancelled and the profile returned.
    pub fn is_downloaded(self) -> bool {
        matches!(self, ProfileState::Downloaded | ProfileState::Installed | ProfileState::Deleted)
    }
}

/// What happens to a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `downloadOrder`, for one EID or for none.
    DownloadOrder { eid: bool },
    /// `confirmOrder`: released for download, or only confirmed.
    ConfirmOrder { release: bool },
    /// `releaseProfile`.
    ReleaseProfile,
    /// The phone downloaded it (notification point 3).
    Downloaded,
    /// The phone installed it (notification point 4, success).
    Installed,
    /// The installation failed or its session was cancelled: it may be
    /// downloaded again.
    InstallFailed,
    /// The phone deleted it (notification point 5).
    Deleted,
    /// `cancelOrder`, back in stock or withdrawn.
    CancelOrder { available: bool },
}

/// An ES2+ refusal: its subject and reason codes and a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsError {
    pub subject_code: &'static str,
    pub reason_code: &'static str,
    pub message: &'static str,
}

impl fmt::Display for EsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} / {})", self.message, self.subject_code, self.reason_code)
    }
}

impl std::error::Error for EsError {}

pub const ICCID_UNKNOWN: EsError = EsError { subject_code: "8.2.1", reason_code: "3.9", message: "the ICCID is not known" };
pub const IN_USE: EsError = EsError { subject_code: "8.2.1", reason_code: "3.3", message: "the profile is already in use or downloaded" };
pub const NOT_ALLOWED: EsError = EsError { subject_code: "8.2.1", reason_code: "3.5", message: "the profile's state does not allow this" };
pub const EID_MISSING: EsError = EsError { subject_code: "8.1.1", reason_code: "2.2", message: "the EID is missing" };
pub const EID_MISMATCH: EsError = EsError { subject_code: "8.1.1", reason_code: "3.10", message: "the EID does not match the profile's" };
pub const PROFILE_TYPE_UNKNOWN: EsError = EsError { subject_code: "8.2.5", reason_code: "3.9", message: "the profile type is not known" };
pub const NONE_AVAILABLE: EsError = EsError { subject_code: "8.2.5", reason_code: "3.7", message: "no profile of that type is available" };
pub const MATCHING_ID_IN_USE: EsError = EsError { subject_code: "8.2.6", reason_code: "3.3", message: "the matching ID is already in use" };
pub const NOT_AUTHORISED: EsError = EsError { subject_code: "1.1", reason_code: "1.2", message: "the function requester is not authorised" };

/// The state `step` leads to from `state`, or the ES2+ refusal.
pub fn after(state: ProfileState, step: Step) -> Result<ProfileState, EsError> {
    use ProfileState::*;
    match (state, step) {
        (Available, Step::DownloadOrder { eid: false }) => Ok(Allocated),
        (Available, Step::DownloadOrder { eid: true }) => Ok(Linked),
        (Allocated | Linked | Confirmed | Released | Downloaded | Installed, Step::DownloadOrder { .. }) => Err(IN_USE),
        (Allocated | Linked, Step::ConfirmOrder { release: true }) => Ok(Released),
        (Allocated | Linked, Step::ConfirmOrder { release: false }) => Ok(Confirmed),
        // Repeating a confirmation (same matching ID and EID, which the
        // caller checks) changes nothing.
        (Confirmed, Step::ConfirmOrder { release: false }) => Ok(Confirmed),
        (Released, Step::ConfirmOrder { release: true }) => Ok(Released),
        (Confirmed, Step::ReleaseProfile) => Ok(Released),
        (Released, Step::Downloaded) => Ok(Downloaded),
        (Downloaded, Step::Installed) => Ok(Installed),
        (Downloaded | Released, Step::InstallFailed) => Ok(Released),
        (Downloaded | Installed, Step::Deleted) => Ok(Deleted),
        (Allocated | Linked | Confirmed | Released, Step::CancelOrder { available: true }) => Ok(Available),
        (Allocated | Linked | Confirmed | Released, Step::CancelOrder { available: false }) => Ok(Unavailable),
        _ => Err(NOT_ALLOWED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProfileState::*;

    #[test]
    fn only_the_transitions_of_sgp22() {
        let allowed: [(ProfileState, Step, ProfileState); 16] = [
            (Available, Step::DownloadOrder { eid: false }, Allocated),
            (Available, Step::DownloadOrder { eid: true }, Linked),
            (Allocated, Step::ConfirmOrder { release: true }, Released),
            (Linked, Step::ConfirmOrder { release: false }, Confirmed),
            (Confirmed, Step::ConfirmOrder { release: false }, Confirmed),
            (Released, Step::ConfirmOrder { release: true }, Released),
            (Confirmed, Step::ReleaseProfile, Released),
            (Released, Step::Downloaded, Downloaded),
            (Downloaded, Step::Installed, Installed),
            (Downloaded, Step::InstallFailed, Released),
            (Released, Step::InstallFailed, Released),
            (Installed, Step::Deleted, Deleted),
            (Downloaded, Step::Deleted, Deleted),
            (Linked, Step::CancelOrder { available: true }, Available),
            (Released, Step::CancelOrder { available: true }, Available),
            (Confirmed, Step::CancelOrder { available: false }, Unavailable),
        ];
        for (from, step, to) in allowed {
            assert_eq!(after(from, step), Ok(to), "{from:?} {step:?}");
        }
        let refused: [(ProfileState, Step, EsError); 8] = [
            (Released, Step::DownloadOrder { eid: true }, IN_USE),
            (Installed, Step::DownloadOrder { eid: false }, IN_USE),
            (Unavailable, Step::DownloadOrder { eid: false }, NOT_ALLOWED),
            (Available, Step::ConfirmOrder { release: true }, NOT_ALLOWED),
            (Downloaded, Step::CancelOrder { available: true }, NOT_ALLOWED),
            (Installed, Step::CancelOrder { available: true }, NOT_ALLOWED),
            (Available, Step::Installed, NOT_ALLOWED),
            (Deleted, Step::Downloaded, NOT_ALLOWED),
        ];
        for (from, step, error) in refused {
            assert_eq!(after(from, step), Err(error), "{from:?} {step:?}");
        }
    }

    #[test]
    fn names_read_back() {
        for state in ProfileState::ALL {
            assert_eq!(ProfileState::parse(state.name()), Some(state));
        }
        assert_eq!(ProfileState::parse("sold"), None);
    }
}
