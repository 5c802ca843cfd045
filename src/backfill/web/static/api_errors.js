// Errors of the API as the page shows them (SPEC §8): one sentence a person understands,
// naming a form field by its label ("Start: …", not "range_start: …"), never a JSON blob,
// a bare status code or "[object Object]". Every message the page shows for a failed
// call goes through apiErrorText.

export class ApiError extends Error {
  /** `message` is the server's text (a string) or null when it gave none. */
  constructor(status, code, message, requestId) {
    super(message || "");
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.serverMessage = message;
  }
}

/** The server's message of a failed response: the envelope's error.message, a framework's
 * `detail` (text, or a list of {msg}); null when there is no text to show. */
export function serverMessage(payload) {
  if (!payload || typeof payload !== "object") return null;
  const error = payload.error;
  if (error && typeof error === "object" && typeof error.message === "string" && error.message.trim()) return error.message;
  if (typeof error === "string" && error.trim()) return error;
  if (typeof payload.detail === "string" && payload.detail.trim()) return payload.detail;
  if (Array.isArray(payload.detail)) {
    const parts = payload.detail.map((d) => (d && typeof d.msg === "string" ? d.msg : null)).filter(Boolean);
    if (parts.length) return parts.join("; ");
  }
  return null;
}

/** The label a person sees for an API field: the create form's label without its hint in
 * parentheses ("Start" for range_start); null when the page has no such field. */
export function fieldLabel(field) {
  const id = field === "transfer_id" ? "f-transfer" : `f-${field}`;
  let node = document.querySelector(`label[for="${id}"]`);
  if (!node && field === "block_uuids") node = document.querySelector("#f-blocks legend");
  if (!node) return null;
  const text = node.textContent.replace(/\s*\(.*$/s, "").trim();
  return text || null;
}

/** The API's snake_case field names in a message replaced by their labels. */
function withLabels(message) {
  return message.replace(/\b[a-z]+(?:_[a-z]+)+\b/g, (name) => fieldLabel(name) || name);
}

/** A capital first letter and a full stop. */
function sentence(text) {
  const value = text.trim().replace(/\s+/g, " ");
  if (!value) return "";
  const first = value.charAt(0).toUpperCase() + value.slice(1);
  return /[.!?…]$/.test(first) ? first : `${first}.`;
}

/** The fields of the create form a message names (API names). */
export function fieldsNamed(message, fields) {
  return fields.filter((field) => new RegExp(`\\b${field}\\b`).test(message || ""));
}

/** An error of a call to the API as one or two sentences for a person. */
export function apiErrorText(error) {
  if (!(error instanceof ApiError)) {
    return sentence(`the page hit an unexpected problem: ${error && error.message ? error.message : String(error)}`);
  }
  const reference = error.requestId ? ` Request ID: ${error.requestId}.` : "";
  if (error.status === 0) {
    return "The server cannot be reached: check your network connection and that the server is running, then try again.";
  }
  const said = error.serverMessage ? sentence(withLabels(error.serverMessage)) : "";
  if (error.status >= 500) {
    const what = said && !/unexpected error/i.test(said) ? said : "The server hit an unexpected error.";
    return `${what} Try again in a moment; if it keeps failing, tell whoever runs the server.${reference}`;
  }
  if (said) return said;
  const named = { 400: "the request was refused as malformed", 401: "you are not signed in", 403: "you are not allowed to do this",
    404: "it was not found", 409: "it conflicts with the current state", 429: "too many requests: wait a moment" };
  return sentence(`the server refused this (${named[error.status] || `HTTP ${error.status}`}) without saying why`) + reference;
}
