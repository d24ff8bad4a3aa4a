//! Plain-language explanations of plans, in English and Chinese.
