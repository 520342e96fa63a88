#include "base/json.h"

namespace wb {

Result<nlohmann::json> ParseJsonBounded(std::string_view text, std::string_view what,
                                        int max_depth) {
  using nlohmann::json;
  bool too_deep = false;
  // The parser itself is iterative; the callback sees each container start
  // with the number of containers around it. Returning false discards that
  // container (and everything inside it) instead of building it, so a deep
  // input costs no more than its text while the parser reads on to the end.
  auto bound = [&](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::array_start || event == json::parse_event_t::object_start) &&
        depth >= max_depth) {
      too_deep = true;
      return false;
    }
    return true;
  };
  json j = json::parse(text, bound, /*allow_exceptions=*/false);
  if (too_deep) {
    return Fail(ErrorCode::kInvalidArgument, "parse", std::string(what),
                "JSON nested deeper than " + std::to_string(max_depth) + " levels");
  }
  if (j.is_discarded())
    return Fail(ErrorCode::kInvalidArgument, "parse", std::string(what), "invalid JSON");
  return j;
}

}  // namespace wb
