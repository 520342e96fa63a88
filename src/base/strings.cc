#include "base/strings.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>

namespace wb {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t pos = s.find(sep, start);
    out.emplace_back(s.substr(start, pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Result<uint64_t> ParseUint(std::string_view text, std::string_view what) {
  std::string_view t = Trim(text);
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc() || ptr != t.data() + t.size()) {
    return Fail(std::string(what), std::string(text), "expected a non-negative integer");
  }
  return v;
}

Result<uint64_t> ParseSize(std::string_view text, std::string_view what) {
  const std::string hint = "expected a size like 512m, 2g or 1048576";
  std::string t(Trim(text));
  size_t i = 0;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.')) ++i;
  std::string num = t.substr(0, i);
  std::string unit = AsciiLower(t.substr(i));
  if (num.empty() || num.find('.') != num.rfind('.') || num == ".") {
    return Fail(std::string(what), std::string(text), hint);
  }
  double mult;
  if (unit.empty() || unit == "b")
    mult = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib")
    mult = 1024.0;
  else if (unit == "m" || unit == "mb" || unit == "mib")
    mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tb" || unit == "tib")
    mult = 1024.0 * 1024 * 1024 * 1024;
  else
    return Fail(std::string(what), std::string(text), hint);
  char* end = nullptr;
  double v = std::strtod(num.c_str(), &end);
  if (end != num.c_str() + num.size()) return Fail(std::string(what), std::string(text), hint);
  double bytes = std::floor(v * mult);
  if (bytes > 9.0e18) return Fail(std::string(what), std::string(text), "too large");
  return static_cast<uint64_t>(bytes);
}

Result<double> ParseCpus(std::string_view text, std::string_view what) {
  std::string t(Trim(text));
  const std::string hint = "expected a positive number of CPUs up to 1024, like 0.5 or 2";
  if (t.empty() || t.find_first_not_of("0123456789.") != std::string::npos) {
    return Fail(std::string(what), std::string(text), hint);
  }
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size() || !(v > 0) || v > 1024)
    return Fail(std::string(what), std::string(text), hint);
  return v;
}

Result<double> ParseSeconds(std::string_view text, std::string_view what) {
  std::string t(Trim(text));
  // Plain decimals only: strtod would also take hex, exponents and "inf".
  if (t.find_first_not_of("0123456789.") != std::string::npos) {
    return Fail(std::string(what), std::string(text), "expected a positive number of seconds");
  }
  char* end = nullptr;
  double v = t.empty() ? 0 : std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size() || !(v > 0) || !std::isfinite(v)) {
    return Fail(std::string(what), std::string(text), "expected a positive number of seconds");
  }
  // Callers turn seconds into int64/uint64 milliseconds and nanoseconds.
  if (v > 1e9)
    return Fail(std::string(what), std::string(text), "too large (at most 1000000000 seconds)");
  return v;
}

}  // namespace wb
