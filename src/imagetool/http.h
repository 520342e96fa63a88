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

struct HttpError {
  bool transport = false;  // the request did not complete (no HTTP status)
};

class Http {
 public:
  Http();
  ~Http();
  Http(const Http&) = delete;
  Http& operator=(const Http&) = delete;

  // GET url. A transport failure returns an Error whose call is "http get"
  // and whose err is -1 (so callers can tell it from a body-sink error).
  [[nodiscard]] Result<HttpResponse> Get(const std::string& url, const std::vector<std::string>& headers,
                                         const BodySink& sink = nullptr);

 private:
  void* curl_;
};

inline constexpr int kTransportError = -1;

}  // namespace wb::imagetool
