// What the HTTP API reads from the network: POST /v1/run's JSON body
// (ParseHttpRunRequest), the Authorization header (BearerToken), and the
// operator's --http address (ParseListenAddress).
//
// Input: a body. The same bytes are also read as a header value and an
// address.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/http_api.h"
#include "fuzz/fuzz_check.h"

using namespace wb::daemon;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // Base64 of anything decodes back to it; decoding junk fails cleanly.
  auto round = Base64Decode(Base64Encode(text), "x");
  FUZZ_CHECK(round.ok() && *round == text);
  (void)Base64Decode(text, "x");

  if (auto tok = BearerToken(text)) {
    FUZZ_CHECK(!tok->empty());
    FUZZ_CHECK(TokenEquals(*tok, std::string(*tok)));
    FUZZ_CHECK(!TokenEquals(std::string(*tok) + "x", *tok));
  }
  if (auto a = ParseListenAddress(text); a.ok()) FUZZ_CHECK(a->port != 0 && !a->host.empty());

  auto r = ParseHttpRunRequest(text);
  if (!r.ok()) return 0;
  FUZZ_CHECK(!r->cmd.empty());
  FUZZ_CHECK(!r->stream);  // streaming is chosen by the Accept header only
  for (const auto& kv : r->env)
    FUZZ_CHECK(!kv.empty() && kv[0] != '=' && kv.find('=') != std::string::npos);
  // A response for it encodes whatever bytes the command printed.
  wb::proto::RunResponse resp;
  resp.stdout_data = std::string(text);
  FUZZ_CHECK(!HttpRunResponseJson(resp).empty());
  return 0;
}
