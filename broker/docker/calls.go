package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Bounds on what is read from the daemon.
const (
	// maxDocument bounds one inspect answer or one list the broker reads
	// for itself (containers, networks, volumes).
	maxDocument = 8 << 20
	// maxImageList bounds the image list: a daemon with tens of thousands
	// of images still lists (the same cap as the lists tenants get).
	maxImageList = 64 << 20
	// maxMessage bounds the body read for an error answer's message, and
	// what is drained of an answer the caller does not read.
	maxMessage = 64 << 10
	// quickTimeout bounds ping and version: status reports, never a
	// tenant's request.
	quickTimeout = 2 * time.Second
)

// send makes one request to the daemon. The path is never parsed as a URL:
// a reference with '?', '#' or '%' in it stays part of the path (escaped).
// A transport failure is ErrUnreachable.
func (c *Client) send(ctx context.Context, method, path, rawQuery string, body []byte, header http.Header) (*http.Response, error) {
	u := url.URL{Scheme: "http", Host: "docker", Path: path, RawQuery: rawQuery}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, clip(path), err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.transport.RoundTrip(req)
	if err != nil {
		return nil, unreachable(err)
	}
	return resp, nil
}

// statusError reads the daemon's message from an unwanted answer and
// closes its body.
func statusError(method, path string, resp *http.Response) error {
	defer resp.Body.Close()
	buf, _ := io.ReadAll(io.LimitReader(resp.Body, maxMessage))
	var m struct {
		Message string `json:"message"`
	}
	// Best effort: an undecodable body leaves the message empty and the
	// status still says what failed.
	_ = json.Unmarshal(buf, &m)
	return &StatusError{Method: method, Path: clip(path), Status: resp.StatusCode, StatusLine: resp.Status, Message: m.Message}
}

// drainClose reads what is left of a body, within a bound, so the
// connection can be reused, and closes it. A longer body only costs the
// connection.
func drainClose(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxMessage))
	resp.Body.Close()
}

// getJSON decodes the 200 answer of GET path?rawQuery into v, reading at
// most limit bytes.
func (c *Client) getJSON(ctx context.Context, path, rawQuery string, limit int64, v any) error {
	resp, err := c.send(ctx, http.MethodGet, path, rawQuery, nil, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return statusError(http.MethodGet, path, resp)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", clip(path), err)
	}
	return nil
}

// clip bounds a path (it may carry a tenant's reference) in messages.
func clip(s string) string {
	const max = 256
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// Ping asks /_ping, within two seconds: any answer but a server error
// means the daemon is there.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, quickTimeout)
	defer cancel()
	resp, err := c.send(ctx, http.MethodGet, "/_ping", "", nil, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 500 {
		return statusError(http.MethodGet, "/_ping", resp)
	}
	resp.Body.Close()
	return nil
}

// Version is the daemon's version and API version ("27.3.1 (API 1.47)"),
// asked within two seconds.
func (c *Client) Version(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, quickTimeout)
	defer cancel()
	var v struct{ Version, APIVersion string }
	if err := c.getJSON(ctx, "/version", "", maxDocument, &v); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s (API %s)", v.Version, v.APIVersion), nil
}

// Container is what inspecting a container tells the broker.
type Container struct {
	ID     string // the full id
	Name   string // without dockerd's leading '/'
	Labels map[string]string
}

// InspectContainer looks a container up the way dockerd resolves a
// reference (full id, name, unique id prefix).
func (c *Client) InspectContainer(ctx context.Context, ref string) (Container, error) {
	var w struct {
		ID     string `json:"Id"`
		Name   string
		Config struct{ Labels map[string]string }
	}
	err := c.getJSON(ctx, "/containers/"+ref+"/json", "", maxDocument, &w)
	return Container{ID: w.ID, Name: strings.TrimPrefix(w.Name, "/"), Labels: w.Config.Labels}, err
}

// Exec is what inspecting an exec instance tells the broker.
type Exec struct {
	ID          string
	ContainerID string // the container it runs in
}

// InspectExec looks an exec instance up by id or id prefix.
func (c *Client) InspectExec(ctx context.Context, ref string) (Exec, error) {
	var e Exec
	err := c.getJSON(ctx, "/exec/"+ref+"/json", "", maxDocument, &e)
	return e, err
}

// Network is what inspecting a network tells the broker.
type Network struct {
	ID     string `json:"Id"`
	Name   string
	Labels map[string]string
}

// InspectNetwork looks a network up by full id, name or id prefix.
func (c *Client) InspectNetwork(ctx context.Context, ref string) (Network, error) {
	var n Network
	err := c.getJSON(ctx, "/networks/"+ref, "", maxDocument, &n)
	return n, err
}

// Volume is what inspecting a volume tells the broker.
type Volume struct {
	Name   string // a volume's name is its id
	Labels map[string]string
}

// InspectVolume looks a volume up by name.
func (c *Client) InspectVolume(ctx context.Context, name string) (Volume, error) {
	var v Volume
	err := c.getJSON(ctx, "/volumes/"+name, "", maxDocument, &v)
	return v, err
}

// Image is what inspecting an image tells the broker.
type Image struct {
	ID          string   `json:"Id"`
	RepoTags    []string `json:"RepoTags"`
	RepoDigests []string `json:"RepoDigests"`
}

// InspectImage looks an image up by id, id prefix, name or digest.
func (c *Client) InspectImage(ctx context.Context, ref string) (Image, error) {
	var i Image
	err := c.getJSON(ctx, "/images/"+ref+"/json", "", maxDocument, &i)
	return i, err
}

// ContainerSummary is one entry of a container list.
type ContainerSummary struct {
	ID     string   `json:"Id"`
	Names  []string // "/name" (and "/other/alias" for legacy links)
	Labels map[string]string
}

// ListContainers lists containers matching filters (dockerd's filters
// argument as JSON; "" for none), stopped ones too when all is set.
func (c *Client) ListContainers(ctx context.Context, all bool, filters string) ([]ContainerSummary, error) {
	q := url.Values{}
	if all {
		q.Set("all", "1")
	}
	if filters != "" {
		q.Set("filters", filters)
	}
	var cs []ContainerSummary
	err := c.getJSON(ctx, "/containers/json", q.Encode(), maxDocument, &cs)
	return cs, err
}

// NetworkSummary is one entry of a network list.
type NetworkSummary struct {
	ID string `json:"Id"`
}

// ListNetworks lists networks matching filters ("" for none).
func (c *Client) ListNetworks(ctx context.Context, filters string) ([]NetworkSummary, error) {
	var ns []NetworkSummary
	err := c.getJSON(ctx, "/networks", filterQuery(filters), maxDocument, &ns)
	return ns, err
}

// VolumeSummary is one entry of a volume list.
type VolumeSummary struct {
	Name string
}

// ListVolumes lists volumes matching filters ("" for none).
func (c *Client) ListVolumes(ctx context.Context, filters string) ([]VolumeSummary, error) {
	var vs struct{ Volumes []VolumeSummary }
	err := c.getJSON(ctx, "/volumes", filterQuery(filters), maxDocument, &vs)
	return vs.Volumes, err
}

// ImageIDs lists the id of every image on the daemon, intermediate ones
// included.
func (c *Client) ImageIDs(ctx context.Context) ([]string, error) {
	var list []struct {
		ID string `json:"Id"`
	}
	if err := c.getJSON(ctx, "/images/json", "all=1", maxImageList, &list); err != nil {
		return nil, err
	}
	ids := make([]string, len(list))
	for i, l := range list {
		ids[i] = l.ID
	}
	return ids, nil
}

func filterQuery(filters string) string {
	if filters == "" {
		return ""
	}
	return url.Values{"filters": {filters}}.Encode()
}

// RemoveContainer removes a container; force stops it first, volumes
// removes its anonymous volumes with it.
func (c *Client) RemoveContainer(ctx context.Context, id string, force, volumes bool) error {
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	if volumes {
		q.Set("v", "1")
	}
	return c.remove(ctx, "/containers/"+id, q.Encode())
}

// RemoveNetwork removes a network.
func (c *Client) RemoveNetwork(ctx context.Context, id string) error {
	return c.remove(ctx, "/networks/"+id, "")
}

// RemoveVolume removes a volume; force removes it even when dockerd
// thinks it in use.
func (c *Client) RemoveVolume(ctx context.Context, name string, force bool) error {
	q := ""
	if force {
		q = "force=1"
	}
	return c.remove(ctx, "/volumes/"+name, q)
}

func (c *Client) remove(ctx context.Context, path, rawQuery string) error {
	resp, err := c.send(ctx, http.MethodDelete, path, rawQuery, nil, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return statusError(http.MethodDelete, path, resp)
	}
	drainClose(resp)
	return nil
}

// VolumeCreate is the body of a volume create.
type VolumeCreate struct {
	Name       string
	Driver     string
	DriverOpts map[string]string
	Labels     map[string]string
}

// CreateVolume creates a volume. dockerd answers a create of an existing
// name with that volume, so success says nothing about who made it.
func (c *Client) CreateVolume(ctx context.Context, v VolumeCreate) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("POST /volumes/create: %w", err)
	}
	resp, err := c.send(ctx, http.MethodPost, "/volumes/create", "", body, http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return statusError(http.MethodPost, "/volumes/create", resp)
	}
	drainClose(resp)
	return nil
}

// Distribution asks dockerd to ask the registry about ref, with the
// registry auth headers given (the tenant's own, or none); nil means the
// registry answered. auth is a credential: it is sent, never kept or
// quoted in an error.
func (c *Client) Distribution(ctx context.Context, ref string, auth []string) error {
	path := "/distribution/" + ref + "/json"
	var h http.Header
	if len(auth) > 0 {
		h = http.Header{"X-Registry-Auth": auth}
	}
	resp, err := c.send(ctx, http.MethodGet, path, "", nil, h)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return statusError(http.MethodGet, path, resp)
	}
	drainClose(resp)
	return nil
}
