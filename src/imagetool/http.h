// A minimal HTTP client over libcurl (easy interface): one request at a time,
// response headers collected, the body streamed to a sink.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace wb::imagetool {

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // of the final response, keys lowercased
  std::string body;                            // when no sink was given
};

// Receives body bytes; an error aborts the transfer and is returned.
using BodySink = std::function<Result<void>(std::string_view)>;

class Http {
 public:
  Http();
  ~Http();
  Http(const Http&) = delete;
  Http& operator=(const Http&) = delete;

  // GET url. A transport failure (no complete HTTP response) returns an
  // Error with code kUnavailable (retryable), so callers can tell it from an
  // error of the body sink without reading its text.
  [[nodiscard]] Result<HttpResponse> Get(const std::string& url,
                                         const std::vector<std::string>& headers,
                                         const BodySink& sink = nullptr);

 private:
  void* curl_;
};

inline constexpr const char* kTransportCall = "http transfer";
// By code, not by the call's name (a Wrap may have rewritten that).
bool IsTransportError(const Error& e);

}  // namespace wb::imagetool
