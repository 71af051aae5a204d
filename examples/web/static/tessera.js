// The browser side of the booking page: plain JavaScript, no build step.
//
// The access token lives in localStorage (as supabase-js keeps its session) and goes to the
// server as "Authorization: Bearer <token>" on every API call. The public availability
// stream uses EventSource; the private bookings stream is read with fetch, because
// EventSource cannot send an Authorization header.

const TOKEN_KEY = "tessera.access_token";

function token() {
  return localStorage.getItem(TOKEN_KEY);
}

function notice(message, kind = "info") {
  const el = document.getElementById("notice");
  el.textContent = message;
  el.className = kind;
  el.hidden = false;
}

function signedOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  showWho();
  notice(message, "error");
}

// POST to the API as the signed-in user; shows the server's message either way.
async function post(url, headers = {}) {
  if (!token()) {
    notice("Sign in first.", "error");
    return;
  }
  const response = await fetch(url, {
    method: "POST",
    headers: { Authorization: `Bearer ${token()}`, ...headers },
  });
  const body = await response.json();
  if (response.status === 401) {
    signedOut(body.message);
  } else if (response.status === 429) {
    const wait = response.headers.get("Retry-After");
    notice(`${body.message} (retry in ${wait} s)`, "error");
  } else {
    notice(body.message, response.ok ? "info" : "error");
  }
  return response;
}

// Read a text/event-stream with fetch, calling onEvent(name, data) for each event.
// Reconnects after a lost connection; stops for good on 401 (the token is no longer valid).
async function followStream(url, onEvent) {
  for (let delay = 500; ; delay = Math.min(delay * 2, 10000)) {
    let response;
    try {
      response = await fetch(url, { headers: { Authorization: `Bearer ${token()}` } });
    } catch {
      response = null; // the server is unreachable: try again
    }
    if (response && response.status === 401) {
      signedOut((await response.json()).message);
      return;
    }
    if (response && response.ok) {
      delay = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let name = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            }
            if (data.length) onEvent(name, data.join("\n"));
          }
        }
      } catch {
        // connection lost: reconnect below
      }
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

function showWho() {
  const who = document.getElementById("who");
  const current = token();
  if (!current) {
    who.innerHTML = '<a href="/dev/sign-in">Sign in</a>';
    return;
  }
  // Display only: the server verifies the token on every call.
  const claims = JSON.parse(atob(current.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  who.textContent = `Signed in as ${claims.email || claims.sub} · `;
  const out = document.createElement("a");
  out.href = "#";
  out.textContent = "Sign out";
  out.onclick = () => {
    localStorage.removeItem(TOKEN_KEY);
    location.reload();
  };
  who.append(out);
}

document.addEventListener("DOMContentLoaded", () => {
  showWho();

  // Live seats and waitlist of the event on this page (public: a plain EventSource).
  const availability = document.getElementById("availability");
  if (availability) {
    const source = new EventSource(availability.dataset.stream);
    source.addEventListener("availability", (e) => {
      availability.innerHTML = e.data;
      availability.dataset.live = "yes"; // following changes from here on
    });
    source.addEventListener("end", () => source.close());
  }

  // Live bookings of the signed-in user (private: fetch with the Authorization header).
  const mine = document.getElementById("my-bookings");
  if (token()) {
    followStream(mine.dataset.stream, (name, html) => {
      if (name === "bookings") {
        mine.innerHTML = html;
        mine.dataset.live = "yes";
      }
    });
  }

  // Book: one idempotency key per intent, so a double click books once.
  const book = document.querySelector("form[data-book]");
  if (book) {
    book.addEventListener("submit", async (e) => {
      e.preventDefault();
      book.dataset.key ||= crypto.randomUUID();
      const key = book.dataset.key;
      const seats = new FormData(book).get("seats");
      const response = await post(`${book.dataset.book}?seats=${seats}`, { "Idempotency-Key": key });
      if (response && book.dataset.key === key) delete book.dataset.key; // answered: next click is new
    });
  }

  // Claim and Cancel buttons in "My bookings".
  document.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-post]");
    if (button) post(button.dataset.post);
  });

  // Development sign-in: ask the server for a token for a local user.
  async function signIn(email) {
    const response = await fetch(`/api/dev/token?email=${encodeURIComponent(email)}`, {
      method: "POST",
    });
    localStorage.setItem(TOKEN_KEY, (await response.json()).access_token);
    location.href = "/";
  }
  document.querySelectorAll("button[data-sign-in]").forEach((button) => {
    button.addEventListener("click", () => signIn(button.dataset.signIn));
  });
  const form = document.querySelector("form[data-sign-in-form]");
  if (form) {
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      signIn(new FormData(form).get("email"));
    });
  }
});
