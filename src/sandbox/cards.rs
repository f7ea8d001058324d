//! Stripe's test cards (typed on the hosted page) and test payment methods
//! (sent to `/v1/payment_intents`), and what each does. A card number is
//! parsed here and reduced to brand and last four digits at once: nothing
//! downstream ever holds the full number. The dispute test card
//! (`4000000000000259`, `pm_card_createDispute`) is approved like any other;
//! its charge is disputed once captured (see `disputes`).

use chrono::Datelike;

/// Why a card was refused, in Stripe's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decline {
    pub code: &'static str,
    pub decline_code: &'static str,
    pub message: &'static str,
}

pub const GENERIC_DECLINE: Decline =
    Decline { code: "card_declined", decline_code: "generic_decline", message: "Your card was declined." };
pub const INSUFFICIENT_FUNDS: Decline =
    Decline { code: "card_declined", decline_code: "insufficient_funds", message: "Your card has insufficient funds." };
const EXPIRED_CARD: Decline =
    Decline { code: "expired_card", decline_code: "expired_card", message: "Your card has expired." };
const INCORRECT_CVC: Decline = Decline {
    code: "incorrect_cvc",
    decline_code: "incorrect_cvc",
    message: "Your card's security code is incorrect.",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Approve,
    Decline(Decline),
}

/// A card as the sandbox keeps it: never the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub brand: &'static str,
    pub last4: String,
    pub outcome: Outcome,
    /// The cardholder disputes the charge (fraudulent) once it is captured.
    pub disputes: bool,
}

pub struct TestCard {
    pub number: &'static str,
    pub brand: &'static str,
    pub description: &'static str,
    pub outcome: Outcome,
    pub disputes: bool,
}

const fn approves(number: &'static str, brand: &'static str) -> TestCard {
    TestCard { number, brand, description: "succeeds", outcome: Outcome::Approve, disputes: false }
}

const fn declines(number: &'static str, description: &'static str, decline: Decline) -> TestCard {
    TestCard { number, brand: "visa", description, outcome: Outcome::Decline(decline), disputes: false }
}

/// The cards the hosted page accepts, as on Stripe.
pub const TEST_CARDS: &[TestCard] = &[
    approves("4242424242424242", "visa"),
    declines("4000000000000002", "declined (card_declined)", GENERIC_DECLINE),
    declines("4000000000009995", "declined (insufficient_funds)", INSUFFICIENT_FUNDS),
    declines("4000000000000069", "declined (expired_card)", EXPIRED_CARD),
    declines("4000000000000127", "declined (incorrect_cvc)", INCORRECT_CVC),
    approves("5555555555554444", "mastercard"),
    TestCard {
        number: DISPUTE_CARD,
        brand: "visa",
        description: "succeeds, then disputed (fraudulent)",
        outcome: Outcome::Approve,
        disputes: true,
    },
];

/// Stripe's test card whose charges are disputed as fraudulent.
pub const DISPUTE_CARD: &str = "4000000000000259";

/// Stripe's test PaymentMethod ids for server-side charges.
pub fn payment_method(id: &str) -> Option<Card> {
    let (brand, last4, outcome, disputes) = match id {
        "pm_card_visa" => ("visa", "4242", Outcome::Approve, false),
        "pm_card_mastercard" => ("mastercard", "4444", Outcome::Approve, false),
        "pm_card_chargeDeclined" => ("visa", "0002", Outcome::Decline(GENERIC_DECLINE), false),
        "pm_card_chargeDeclinedInsufficientFunds" => ("visa", "9995", Outcome::Decline(INSUFFICIENT_FUNDS), false),
        "pm_card_createDispute" => ("visa", "0259", Outcome::Approve, true),
        _ => return None,
    };
    Some(Card { brand, last4: last4.into(), outcome, disputes })
}

/// A problem with what was typed, naming the form field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    pub field: &'static str,
    pub message: &'static str,
}

fn form_error(field: &'static str, message: &'static str) -> FormError {
    FormError { field, message }
}

/// Checks the typed card against the test cards; `today` is (year, month).
pub fn parse_card(number: &str, exp_month: &str, exp_year: &str, cvc: &str) -> Result<Card, FormError> {
    let today = chrono::Utc::now();
    parse_card_at(number, exp_month, exp_year, cvc, (today.year(), today.month()))
}

fn parse_card_at(
    number: &str,
    exp_month: &str,
    exp_year: &str,
    cvc: &str,
    today: (i32, u32),
) -> Result<Card, FormError> {
    let digits: String = number.chars().filter(|c| *c != ' ').collect();
    if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) || !luhn(&digits) {
        return Err(form_error("card_number", "Your card number is invalid."));
    }
    let month: u32 = exp_month.trim().parse().unwrap_or(0);
    if !(1..=12).contains(&month) {
        return Err(form_error("exp_month", "Your card's expiration month is invalid."));
    }
    let year = parse_year(exp_year.trim()).ok_or(form_error("exp_year", "Your card's expiration year is invalid."))?;
    if (year, month) < today {
        return Err(form_error("exp_year", "Your card's expiration date is in the past."));
    }
    let cvc = cvc.trim();
    if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(form_error("cvc", "Your card's security code is invalid."));
    }
    let test = TEST_CARDS
        .iter()
        .find(|c| c.number == digits)
        .ok_or(form_error("card_number", "This is the sandbox: use one of the test cards listed below."))?;
    Ok(Card {
        brand: test.brand,
        last4: digits[digits.len() - 4..].to_string(),
        outcome: test.outcome,
        disputes: test.disputes,
    })
}

/// "2031" or "31" (this century).
fn parse_year(raw: &str) -> Option<i32> {
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match raw.len() {
        2 => raw.parse::<i32>().ok().map(|y| 2000 + y),
        4 => raw.parse().ok(),
        _ => None,
    }
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: (i32, u32) = (2026, 5);

    fn card(number: &str) -> Result<Card, FormError> {
        parse_card_at(number, "12", "2030", "123", TODAY)
    }

    #[test]
    fn test_cards_do_what_stripe_says() {
        assert_eq!(card("4242 4242 4242 4242").unwrap().outcome, Outcome::Approve);
        assert_eq!(card("4242424242424242").unwrap().last4, "4242");
        assert_eq!(card("4000000000000002").unwrap().outcome, Outcome::Decline(GENERIC_DECLINE));
        assert_eq!(card("4000000000009995").unwrap().outcome, Outcome::Decline(INSUFFICIENT_FUNDS));
        let disputed = card("4000 0000 0000 0259").unwrap();
        assert_eq!((disputed.outcome, disputed.disputes, disputed.last4.as_str()), (Outcome::Approve, true, "0259"));
        assert!(!card("4242424242424242").unwrap().disputes);
        for c in TEST_CARDS {
            assert!(luhn(c.number), "{}", c.number);
        }
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            ("4242424242424241", "12", "2030", "123", "card_number"),
            ("42424242", "12", "2030", "123", "card_number"),
            ("4242x24242424242", "12", "2030", "123", "card_number"),
            ("4111111111111111", "12", "2030", "123", "card_number"),
            ("4242424242424242", "13", "2030", "123", "exp_month"),
            ("4242424242424242", "", "2030", "123", "exp_month"),
            ("4242424242424242", "12", "20x0", "123", "exp_year"),
            ("4242424242424242", "4", "2026", "123", "exp_year"),
            ("4242424242424242", "12", "30", "12", "cvc"),
            ("4242424242424242", "12", "30", "12a", "cvc"),
        ];
        for (number, month, year, cvc, field) in cases {
            let err = parse_card_at(number, month, year, cvc, TODAY).unwrap_err();
            assert_eq!(err.field, field, "{number} {month} {year} {cvc}");
        }
        assert!(parse_card_at("4242424242424242", "5", "26", "123", TODAY).is_ok());
    }

    #[test]
    fn test_payment_methods() {
        assert_eq!(payment_method("pm_card_visa").unwrap().outcome, Outcome::Approve);
        assert_eq!(
            payment_method("pm_card_chargeDeclinedInsufficientFunds").unwrap().outcome,
            Outcome::Decline(INSUFFICIENT_FUNDS)
        );
        let disputed = payment_method("pm_card_createDispute").unwrap();
        assert_eq!((disputed.outcome, disputed.disputes, disputed.last4.as_str()), (Outcome::Approve, true, "0259"));
        assert!(!payment_method("pm_card_visa").unwrap().disputes);
        assert!(payment_method("pm_nope").is_none());
    }
}
