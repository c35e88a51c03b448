package simulator

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	org   = "0ae87ade-6c7a-4b6f-9d49-1b0e8a8f1c2d"
	token = "admin-token"
)

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func call(t *testing.T, srv *httptest.Server, method, path, tok, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &a.body); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %s", method, path, b)
		}
	}
	return a
}

func start(t *testing.T, opts Options) (*Server, *httptest.Server) {
	opts.OrgID, opts.Token = org, token
	s := New(opts)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

const base = "/v1/contacts/organizations/" + org + "/contacts"

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, tok, body string
		want                          int
		wantMsg                       string
	}{
		{"create", "POST", base, token, `{"schemas":"` + Schema + `","source":"CH","displayName":"A","phoneNumbers":[{"value":"+331","type":"work"}]}`, 201, ""},
		{"schemas array", "POST", base, token, `{"schemas":["` + Schema + `"],"source":"CH","phoneNumbers":[{"value":"+331","type":"work"}]}`, 400, "schemas must be the string"},
		{"schemas missing", "POST", base, token, `{"source":"CH","phoneNumbers":[{"value":"+331","type":"work"}]}`, 400, "schemas is required"},
		{"source missing", "POST", base, token, `{"schemas":"` + Schema + `","phoneNumbers":[{"value":"+331","type":"work"}]}`, 403, "source is required"},
		{"source not CH", "POST", base, token, `{"schemas":"` + Schema + `","source":"LDAP","phoneNumbers":[{"value":"+331","type":"work"}]}`, 403, "only CH"},
		{"phone type", "POST", base, token, `{"schemas":"` + Schema + `","source":"CH","phoneNumbers":[{"value":"+331","type":"cell"}]}`, 400, "type \"cell\""},
		{"email type", "POST", base, token, `{"schemas":"` + Schema + `","source":"CH","emails":[{"value":"a@b","type":"office"}]}`, 400, "emails[0].type"},
		{"sip type", "POST", base, token, `{"schemas":"` + Schema + `","source":"CH","sipAddresses":[{"value":"a@b","type":"work"}]}`, 400, "sipAddresses[0].type"},
		{"no way to reach", "POST", base, token, `{"schemas":"` + Schema + `","source":"CH","displayName":"A"}`, 400, "at least one of"},
		{"address object", "POST", base, token, `{"schemas":"` + Schema + `","source":"CH","address":{"city":"x"},"emails":[{"value":"a@b","type":"work"}]}`, 400, "address must be a string"},
		{"group not uuid", "POST", base, token, `{"schemas":"` + Schema + `","source":"CH","groupIds":["sales"],"emails":[{"value":"a@b","type":"work"}]}`, 400, "groupIds[0]"},
		{"unknown field", "POST", base, token, `{"schemas":"` + Schema + `","source":"CH","nickname":"x","emails":[{"value":"a@b","type":"work"}]}`, 400, "unknown field"},
		{"wrong token", "POST", base, "nope", `{}`, 401, "valid access token"},
		{"no token", "GET", base + "/search", "", "", 401, ""},
		{"unknown org", "GET", "/v1/contacts/organizations/11111111-2222-4333-8444-555555555555/contacts/search", token, "", 404, "organization"},
		{"org not a uuid", "GET", "/v1/contacts/organizations/Y2lzY29zcGFyazovL3Vz/contacts/search", token, "", 400, "UUID"},
		{"unknown contact", "GET", base + "/3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", token, "", 404, "not found"},
		{"delete unknown", "DELETE", base + "/3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", token, "", 404, ""},
		{"bulk schemas array", "POST", base + "/bulk", token, `{"schemas":["` + Schema + `"],"contacts":[]}`, 400, "schemas"},
		{"bulk delete not uuid", "POST", base + "/bulk/delete", token, `{"schemas":"` + Schema + `","objectIds":["x"]}`, 400, "not a UUID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, srv := start(t, Options{})
			a := call(t, srv, tc.method, tc.path, tc.tok, tc.body)
			if a.status != tc.want {
				t.Fatalf("status %d %v, want %d", a.status, a.body, tc.want)
			}
			if msg, _ := a.body["message"].(string); !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("message %q, want %q", msg, tc.wantMsg)
			}
			if tc.want == 201 && !uuidRE.MatchString(a.body["contactId"].(string)) {
				t.Errorf("contactId %v", a.body["contactId"])
			}
		})
	}
}

func TestBulkNullSlots(t *testing.T) {
	s, srv := start(t, Options{})
	id := s.Put(Contact{DisplayName: "Old", PhoneNumbers: []Item{{Value: "+331", Type: "work", Primary: true}}})
	body := `{"schemas":"` + Schema + `","contacts":[
		{"source":"CH","displayName":"New","emails":[{"value":"n@x","type":"work"}]},
		{"source":"CH","displayName":"Bad","phoneNumbers":[{"value":"+332","type":"cell"}]},
		{"contactId":"` + id + `","source":"CH","phoneNumbers":[{"value":"+333","type":"mobile","primary":true},{"value":"+331","operation":"delete"}]},
		{"contactId":"3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d","source":"CH","displayName":"Ghost"}]}`
	a := call(t, srv, "POST", base+"/bulk", token, body)
	if a.status != 200 {
		t.Fatalf("status %d %v", a.status, a.body)
	}
	cs := a.body["contacts"].([]any)
	if len(cs) != 4 || cs[0] == nil || cs[1] != nil || cs[2] == nil || cs[3] != nil {
		t.Fatalf("contacts = %v, want [contact null contact null]", cs)
	}
	fails := a.body["failedContacts"].([]any)
	if len(fails) != 2 {
		t.Fatalf("failedContacts = %v", fails)
	}
	f0, f1 := fails[0].(map[string]any), fails[1].(map[string]any)
	if f0["id"] != "1" || f0["errorCode"] != "400" || f1["id"] != "3" || f1["statusCode"] != float64(404) {
		t.Errorf("failedContacts = %v", fails)
	}
	got, _ := s.Get(id)
	if len(got.PhoneNumbers) != 1 || got.PhoneNumbers[0].Value != "+333" || got.DisplayName != "Old" {
		t.Errorf("merged contact = %+v: the deleted number must be gone, the name kept", got)
	}
}

func TestPatchAddsNumbersUnlessDeleted(t *testing.T) {
	s, srv := start(t, Options{})
	id := s.Put(Contact{DisplayName: "A", PhoneNumbers: []Item{{Value: "+331", Type: "work", Primary: true}}})
	a := call(t, srv, "PATCH", base+"/"+id, token, `{"phoneNumbers":[{"value":"+332","type":"work","primary":true}],"groupIds":["7a1c3f6e-2b4d-4e8f-9a0b-1c2d3e4f5a6b"]}`)
	if a.status != 200 {
		t.Fatalf("%d %v", a.status, a.body)
	}
	got, _ := s.Get(id)
	if len(got.PhoneNumbers) != 2 || got.PhoneNumbers[0].Primary || !got.PhoneNumbers[1].Primary || len(got.GroupIDs) != 1 {
		t.Errorf("after PATCH: %+v", got)
	}
	call(t, srv, "PATCH", base+"/"+id, token, `{"phoneNumbers":[{"value":"+331","operation":"delete"}],"groupIds":[]}`)
	got, _ = s.Get(id)
	if len(got.PhoneNumbers) != 1 || got.PhoneNumbers[0].Value != "+332" || len(got.GroupIDs) != 0 {
		t.Errorf("after delete: %+v", got)
	}
	if a := call(t, srv, "PATCH", base+"/"+id, token, `{"phoneNumbers":[{"value":"+332","operation":"delete"}]}`); a.status != 400 {
		t.Errorf("removing the last way to reach a contact: %d", a.status)
	}
}

func TestSearchPaging(t *testing.T) {
	s, srv := start(t, Options{})
	for i := 0; i < 5; i++ {
		s.Put(Contact{DisplayName: "Acme " + string(rune('a'+i)), Emails: []Item{{Value: "x@y", Type: "WORK"}}})
	}
	a := call(t, srv, "GET", base+"/search?keyword=acme&limit=2", token, "")
	link := a.header.Get("Link")
	if a.body["total"] != float64(5) || len(a.body["result"].([]any)) != 2 || !strings.Contains(link, `rel="next"`) {
		t.Fatalf("page 1: %v, Link %q", a.body, link)
	}
	u, _ := url.Parse(strings.Trim(strings.Split(link, ";")[0], "<>"))
	if u.Query().Get("start") != "2" || u.Query().Get("keyword") != "acme" {
		t.Errorf("next link %s", u)
	}
	a = call(t, srv, "GET", base+"/search?limit=2&start=4", token, "")
	if a.header.Get("Link") != "" || len(a.body["result"].([]any)) != 1 {
		t.Errorf("last page: %v, Link %q", a.body, a.header.Get("Link"))
	}
	a = call(t, srv, "GET", base+"/search?keyword=nobody", token, "")
	if _, ok := a.body["result"]; ok || a.body["total"] != float64(0) {
		t.Errorf("empty page: %v, want no result field", a.body)
	}
}

func TestFaultsAndTokens(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(Options{OrgID: org, ClientID: "c", ClientSecret: "cs", RefreshToken: "r0", TokenTTL: time.Minute, Now: func() time.Time { return now }})
	srv := httptest.NewServer(s)
	defer srv.Close()
	form := func(refresh string) *http.Response {
		resp, err := srv.Client().PostForm(srv.URL+"/v1/access_token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"c"}, "client_secret": {"cs"}, "refresh_token": {refresh}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := form("r0")
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int    `json:"expires_in"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok.ExpiresIn != 60 || tok.RefreshToken == "r0" {
		t.Fatalf("refresh: %d %+v", resp.StatusCode, tok)
	}
	if r := form("r0"); r.StatusCode != 400 {
		t.Errorf("old refresh token accepted: %d", r.StatusCode)
	}
	if a := call(t, srv, "GET", base+"/search", tok.AccessToken, ""); a.status != 200 {
		t.Errorf("new access token: %d", a.status)
	}
	s.Inject(Fault{Route: "search", Status: 429, RetryAfter: "3", Times: 1})
	if a := call(t, srv, "GET", base+"/search", tok.AccessToken, ""); a.status != 429 || a.header.Get("Retry-After") != "3" {
		t.Errorf("injected 429: %d %q", a.status, a.header.Get("Retry-After"))
	}
	now = now.Add(2 * time.Minute)
	if a := call(t, srv, "GET", base+"/search", tok.AccessToken, ""); a.status != 401 {
		t.Errorf("expired token: %d", a.status)
	}
	if c := s.Calls(); c["search"] != 3 || c["access_token"] != 2 {
		t.Errorf("calls %v", c)
	}
}
