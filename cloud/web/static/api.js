// Shared by /ops and /pos: calls to the JSON API with the signed-in token, errors in plain words.
"use strict";

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

const Api = {
  storageKey: "storelens.token",

  token() {
    return localStorage.getItem(this.storageKey);
  },
  setToken(token) {
    localStorage.setItem(this.storageKey, token);
  },
  signOut() {
    localStorage.removeItem(this.storageKey);
  },

  // fetch() with the bearer token; resolves to parsed JSON (or text for CSV), throws ApiError.
  async call(method, path, body, { text = false } = {}) {
    const headers = { Accept: text ? "text/csv" : "application/json" };
    const token = this.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, "No connection to the server. Check the network; the page will keep trying.");
    }
    const payload = text ? await response.text() : await response.json().catch(() => null);
    if (!response.ok) {
      throw new ApiError(response.status, Api.plain(response.status, payload), payload);
    }
    return payload;
  },

  // The server's message when it gave one, else what the status means for a clerk.
  plain(status, payload) {
    const detail = payload && payload.detail;
    if (typeof detail === "string") return detail;
    if (detail && typeof detail.detail === "string") return detail.detail;
    if (Array.isArray(detail) && detail.length) {
      return detail.map((d) => {
        const where = (d.loc || []).slice(1).join(".");
        return where ? `${where}: ${d.msg}` : d.msg;
      }).join("; ");
    }
    if (status === 401) return "Your sign-in has expired. Please sign in again.";
    if (status === 403) return "This account is not allowed to do that.";
    if (status === 404) return "Not found.";
    if (status === 409) return "Someone else changed this first. The list has been refreshed.";
    if (status >= 500) return "The server had a problem. Please try again in a moment.";
    return `Request failed (${status}).`;
  },
};

function notice(message, kind = "error") {
  const box = document.getElementById("notice");
  if (!message) {
    box.hidden = true;
    return;
  }
  box.textContent = message;
  box.className = `notice ${kind}`;
  box.hidden = false;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function showWho(text) {
  const who = document.getElementById("who");
  const out = document.getElementById("sign-out");
  who.textContent = text || "";
  who.hidden = out.hidden = !text;
}
