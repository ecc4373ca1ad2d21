// GraphQL Code Generator with the client preset. `npm run codegen` writes ./gql/: a typed
// document, with result and variables types of its own, for each operation in ../operations and
// each graphql(`...`) call in this folder's .ts files; `npm run check` also runs tsc.
//
// The schema is the repository's exported SDL by default. Point GRAPHQL_SCHEMA at a running
// server to introspect it instead (introspection needs no token):
//   GRAPHQL_SCHEMA=http://127.0.0.1:8000/graphql npm run codegen
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: process.env.GRAPHQL_SCHEMA ?? "../../schema.graphql",
  documents: ["../operations/*.graphql", "./*.ts", "!./codegen.ts", "!./gql/**"],
  generates: {
    "./gql/": {
      preset: "client",
      config: {
        // DateTime travels as an ISO 8601 string with a time zone, in both directions.
        scalars: { DateTime: "string" },
        enumsAsTypes: true,
        useTypeImports: true,
      },
      presetConfig: {
        // A fragment's fields are read with getFragmentData(FragmentDoc, data): code sees the
        // fields its own fragment selects, not those another fragment happens to fetch.
        fragmentMasking: { unmaskFunctionName: "getFragmentData" },
        // Trusted documents: also write gql/persisted-documents.json, the manifest a server can
        // load, mapping "sha256:<hex>" (the GraphQL over HTTP document id; Apollo's automatic
        // persisted queries send the same <hex> as sha256Hash) to each operation's text. Each
        // generated document carries its id in `__meta__.hash`.
        persistedDocuments: { hashAlgorithm: "sha256" },
      },
    },
  },
};

export default config;
