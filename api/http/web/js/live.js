// Following the log live through `GET /events/stream` (Server-Sent Events).
//
// Read with fetch() rather than EventSource: the stream names each message by its event
// type, and EventSource hands named messages only to listeners registered for that exact
// name — a page cannot know every type a plug-in layer will record. fetch() also sends the
// token as a header. A dropped connection resumes after the last position seen.

import { ApiError, request } from "./api.js";

const RETRY_MS = 1000;

function setState(state, text) {
  document.getElementById("live").dataset.state = state;
  document.getElementById("live-text").textContent = text;
}

/** Messages from SSE text as it arrives: {id, event, data} for each complete block. */
export function* parseBlocks(buffer) {
  for (const block of buffer) {
    const message = { id: null, event: "message", data: [] };
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue; // keep-alive comments
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") message.data.push(value);
      else if (field === "id") message.id = value;
      else if (field === "event") message.event = value;
    }
    if (message.data.length) yield { ...message, data: message.data.join("\n") };
  }
}

/** Calls `onEvent(event JSON)` for every event appended from `from` on, for ever. */
export async function connectLive(onEvent, from) {
  let position = from;
  for (;;) {
    try {
      const response = await request("events/stream", {
        query: { from: position }, accept: "text/event-stream",
      });
      setState("open", "live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value.replace(/\r\n?/g, "\n");
        const blocks = text.split("\n\n");
        text = blocks.pop(); // an incomplete message waits for the rest
        for (const message of parseBlocks(blocks)) {
          if (message.id !== null) position = Number(message.id) + 1;
          onEvent(JSON.parse(message.data));
        }
      }
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        setState("closed", "not live: no access to the event stream");
        return; // asking for a token again every second would be no help
      }
      console.warn("event stream:", error);
    }
    setState("closed", "reconnecting…");
    await new Promise((resume) => setTimeout(resume, RETRY_MS));
  }
}
