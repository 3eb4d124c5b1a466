//! Purpose of use: the token-request parameter, its default, codes and displays.

use auth::purpose::{PurposeError, PurposeOfUse, PARAMETER, SYSTEM};

#[test]
fn from_parameter() {
    let check = |value: Option<&str>, expected: Result<PurposeOfUse, PurposeError>| {
        assert_eq!(PurposeOfUse::from_parameter(value), expected, "{value:?}");
    };
    check(None, Ok(PurposeOfUse::Treat));
    check(Some(""), Ok(PurposeOfUse::Treat));
    check(Some("TREAT"), Ok(PurposeOfUse::Treat));
    check(Some("HPAYMT"), Ok(PurposeOfUse::Hpaymt));
    check(Some("HOPERAT"), Ok(PurposeOfUse::Hoperat));
    check(Some("PUBHLTH"), Ok(PurposeOfUse::Pubhlth));
    check(Some("ETREAT"), Ok(PurposeOfUse::Etreat));
    check(Some("PATRQT"), Ok(PurposeOfUse::Patrqt));
    check(Some("treat"), Err(PurposeError));
    check(Some("MARKETING"), Err(PurposeError));
    assert_eq!(PARAMETER, "purpose_of_use");
    assert_eq!(SYSTEM, "http://terminology.hl7.org/CodeSystem/v3-ActReason");
}

#[test]
fn codes_round_trip_and_have_displays() {
    for purpose in PurposeOfUse::ALL {
        assert_eq!(purpose.code().parse::<PurposeOfUse>(), Ok(purpose));
        assert_eq!(purpose.to_string(), purpose.code());
        assert!(!purpose.display().is_empty());
        assert_eq!(purpose.is_emergency(), purpose == PurposeOfUse::Etreat);
    }
    assert_eq!(PurposeOfUse::Etreat.display(), "Emergency Treatment");
}
