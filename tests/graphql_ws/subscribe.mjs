// The change feed through graphql-ws, as a Node.js service or a browser app would follow it:
// each change is printed as a JSON line. When the connection is lost, graphql-ws reconnects
// (here to the next URL given: another server) and sends the same subscription again; its
// `since` was kept at the cursor of the last change received, so it resumes exactly there.
//
//   node subscribe.mjs '{"urls": ["ws://a/graphql", "ws://b/graphql"], "token": "...",
//                        "since": "<cursor>", "count": 11}'
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const { urls, token, since, count } = JSON.parse(process.argv[2]);
const CHANGES = `subscription Changes($since: String) {
  changes(since: $since) { cursor kind id node { id ... on Task { title } } }
}`;

let server = 0;
const client = createClient({
  url: () => urls[server],
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
  retryAttempts: 20,
  retryWait: () => new Promise((resolve) => setTimeout(resolve, 200)),
  on: {
    closed: () => {
      server = Math.min(server + 1, urls.length - 1); // the next one, if there is one
    },
  },
});

const payload = { query: CHANGES, variables: { since } };
let received = 0;
await new Promise((resolve, reject) => {
  const unsubscribe = client.subscribe(payload, {
    next: ({ data, errors }) => {
      if (errors) return reject(new Error(JSON.stringify(errors)));
      payload.variables.since = data.changes.cursor; // a reconnection resumes after it
      console.log(JSON.stringify(data.changes));
      if (++received === count) {
        unsubscribe();
        resolve();
      }
    },
    error: (error) => reject(error instanceof Error ? error : new Error(JSON.stringify(error))),
    complete: resolve,
  });
});
await client.dispose();
