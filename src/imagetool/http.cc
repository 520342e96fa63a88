#include "imagetool/http.h"

#include <curl/curl.h>

#include <cctype>

#include "base/strings.h"

namespace wb::imagetool {
namespace {

struct Transfer {
  CURL* curl;
  HttpResponse* resp;
  const BodySink* sink;
  Error sink_error;
  bool failed = false;
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  // A new status line starts a new response (after a redirect or 100).
  if (StartsWith(line, "HTTP/")) {
    t->resp->headers.clear();
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string key = AsciiLower(Trim(line.substr(0, colon)));
  t->resp->headers[key] = std::string(Trim(line.substr(colon + 1)));
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view chunk(data, size * n);
  // Only a successful response's body goes to the sink (an error page must
  // not land in a blob file).
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (t->sink && *t->sink && status >= 200 && status < 300) {
    auto r = (*t->sink)(chunk);
    if (!r.ok()) {
      t->sink_error = std::move(r).error();
      t->failed = true;
      return 0;  // aborts the transfer
    }
    return size * n;
  }
  if (t->resp->body.size() + chunk.size() > (64u << 20)) {
    t->sink_error = Fail("http get", "", "response larger than 64 MiB");
    t->failed = true;
    return 0;
  }
  t->resp->body.append(chunk);
  return size * n;
}

}  // namespace

bool IsTransportError(const Error& e) { return e.code == ErrorCode::kUnavailable; }

Http::Http() : curl_(curl_easy_init()) {}
Http::~Http() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

Result<HttpResponse> Http::Get(const std::string& url, const std::vector<std::string>& headers,
                               const BodySink& sink) {
  CURL* c = static_cast<CURL*>(curl_);
  if (!c) return Fail("curl_easy_init", "", "failed");
  curl_easy_reset(c);
  HttpResponse resp;
  Transfer t{c, &resp, &sink, {}, false};
  curl_slist* hl = nullptr;
  for (const auto& h : headers) hl = curl_slist_append(hl, h.c_str());
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  // Registries redirect blob downloads to their storage. curl drops our
  // Authorization header when a redirect changes host.
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
  // A stalled transfer (under 1 byte/s for 60 s) fails and is retried.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "warmbox/0.1");
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(hl);
  if (t.failed) return t.sink_error;
  if (rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY) {
    // Not retried: a name that does not resolve now will not in a second.
    return Fail("resolve", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
  }
  if (rc != CURLE_OK) {
    return Fail(ErrorCode::kUnavailable, kTransportCall, url,
                errbuf[0] ? errbuf : curl_easy_strerror(rc));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
  return resp;
}

}  // namespace wb::imagetool
