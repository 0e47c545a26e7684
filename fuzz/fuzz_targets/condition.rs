//! The condition parser and evaluator must never panic, whatever the text
//! (an agent file is user input) and whatever the arguments.
#![no_main]

use countersign_policy::condition::Condition;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the condition; the rest, if JSON, the arguments.
    let (condition, arguments) = text.split_once('\n').unwrap_or((text, "{}"));
    if let Ok(condition) = Condition::parse(condition) {
        let arguments = serde_json::from_str(arguments)
            .unwrap_or_else(|_| serde_json::json!({"amount": 150, "to": "a@b.c", "items": [1, 2]}));
        let _ = condition.evaluate(&arguments);
    }
});
