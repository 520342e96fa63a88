// Pure string helpers (parsing of user input lives here so it is unit-tested).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace wb {

std::string_view Trim(std::string_view s);
std::vector<std::string> Split(std::string_view s, char sep);
bool StartsWith(std::string_view s, std::string_view prefix);
// s with ASCII letters in lower case (header names, schemes, units).
std::string AsciiLower(std::string_view s);

// "512", "512k", "64m", "2g", "1.5g", "100MiB" -> bytes. what names the option
// in the error ("--memory").
Result<uint64_t> ParseSize(std::string_view text, std::string_view what);
// A positive number of seconds ("2", "0.5").
Result<double> ParseSeconds(std::string_view text, std::string_view what);
// A CPU quota in cores: a positive decimal up to 1024 ("0.5", "2").
Result<double> ParseCpus(std::string_view text, std::string_view what);
// An unsigned integer in full.
Result<uint64_t> ParseUint(std::string_view text, std::string_view what);

}  // namespace wb
