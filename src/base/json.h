// Parsing JSON that comes from outside (a client, a registry, the agent's
// peer) with its nesting bounded: every walk of a parsed tree (dump, copy,
// compare) recurses once per level, so a small input of nested brackets
// would overflow the stack of whoever touches the tree later.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "base/error.h"

namespace wb {

// Arrays and objects nested inside each other; no protocol of ours needs 10.
inline constexpr int kMaxJsonDepth = 64;

// A JSON document whose arrays and objects nest at most max_depth deep.
// Errors are kInvalidArgument, call "parse", arg `what`, and the detail
// "invalid JSON" or "JSON nested deeper than N levels". A deeper input is
// refused before its deep part is built.
[[nodiscard]] Result<nlohmann::json> ParseJsonBounded(std::string_view text, std::string_view what,
                                                      int max_depth = kMaxJsonDepth);

}  // namespace wb
