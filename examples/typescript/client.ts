// A small typed client over fetch, to copy into a front-end. Every operation is a typed document:
// GraphQL Code Generator's client preset (codegen.ts) reads each graphql(`...`) call below and
// the operations in ../operations, and writes ./gql/, where the result and variables types of
// each document come from that document's own selection. `npm run check` regenerates ./gql/ and
// runs tsc: reading a field the document does not select, or passing a variable of the wrong
// type, does not compile. tests/test_clients.py runs that check, then this client, against a
// live server.
import type { ResultOf, TypedDocumentNode } from "@graphql-typed-document-node/core";
import { print } from "graphql";

import { getFragmentData, graphql } from "./gql";
import { type Priority, TaskDetailDocument, TaskFieldsFragmentDoc } from "./gql/graphql";

export const SignUpForToken = graphql(`
  mutation SignUpForToken($input: SignUpInput!) {
    signUp(input: $input) { token }
  }
`);

export const SignInForToken = graphql(`
  mutation SignInForToken($input: SignInInput!) {
    signIn(input: $input) { token }
  }
`);

export const CreateTaskId = graphql(`
  mutation CreateTaskId($input: CreateTaskInput!) {
    createTask(input: $input) { id }
  }
`);

export const OpenTaskTitles = graphql(`
  query OpenTaskTitles($first: Int!, $after: String) {
    tasks(filter: {completed: false}, first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { title }
    }
  }
`);

/** A GraphQL error, with the API's `extensions.code` (UNAUTHENTICATED, NOT_FOUND, ...). */
export class GraphQLRequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(`${code}: ${message}`);
  }
}

type Answer<T> = {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string; field?: string } }[];
};

export class TodoClient {
  constructor(
    private readonly url: string,
    private token?: string,
  ) {}

  /** Sends one typed document; its variables and its answer are typed by the document itself. */
  async request<Result, Variables>(
    document: TypedDocumentNode<Result, Variables>,
    variables: Variables,
  ): Promise<Result> {
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (this.token) headers["Authorization"] = `Bearer ${this.token}`;
    const response = await fetch(this.url, {
      method: "POST",
      headers,
      body: JSON.stringify({ query: print(document), variables }),
    });
    const answer = (await response.json()) as Answer<Result>;
    const [first] = answer.errors ?? [];
    if (first) {
      const { code = "ERROR", field } = first.extensions ?? {};
      throw new GraphQLRequestError(code, first.message, field);
    }
    if (!answer.data) {
      throw new GraphQLRequestError("ERROR", `HTTP ${response.status} without data`);
    }
    return answer.data;
  }

  /** Signs up, or signs in when the account exists; later requests carry the token. */
  async signUpOrSignIn(email: string, password: string): Promise<void> {
    try {
      const { signUp } = await this.request(SignUpForToken, { input: { email, password } });
      this.token = required(signUp, "signUp").token;
    } catch (error) {
      if (!(error instanceof GraphQLRequestError && error.code === "CONFLICT")) throw error;
      const { signIn } = await this.request(SignInForToken, { input: { email, password } });
      this.token = required(signIn, "signIn").token;
    }
  }

  /** Creates a task and answers its id (the only field CreateTaskId selects). */
  async createTask(title: string, priority: Priority, dueDate?: string): Promise<string> {
    const { createTask } = await this.request(CreateTaskId, {
      input: { title, priority, dueDate: dueDate ?? null },
    });
    return required(createTask, "createTask").id;
  }

  /** A task as the shared TaskFields fragment (../operations/fragments.graphql) shows it. */
  async taskDetail(id: string) {
    const { task } = await this.request(TaskDetailDocument, { id });
    if (!task) return null;
    // Fragment masking: the fields of ...TaskFields are read through getFragmentData only.
    const fields = getFragmentData(TaskFieldsFragmentDoc, task);
    return {
      ...fields,
      tagNames: fields.tags.map((tag) => tag.name),
      parentTitles: task.parents.map((parent) => parent.title),
    };
  }

  /** Every open task's title, page after page. */
  async openTaskTitles(): Promise<string[]> {
    const titles: string[] = [];
    let after: string | null = null;
    for (;;) {
      // (annotated: `after` depends on the answer, which TypeScript cannot infer in a loop)
      const { tasks }: ResultOf<typeof OpenTaskTitles> = await this.request(OpenTaskTitles, {
        first: 50,
        after,
      });
      titles.push(...tasks.nodes.map((task) => task.title));
      if (!tasks.pageInfo.hasNextPage) return titles;
      after = tasks.pageInfo.endCursor ?? null;
    }
  }
}

/** A field that failed answers null (its error, in `errors`, was thrown by request() already). */
function required<T>(value: T | null | undefined, field: string): T {
  if (value == null) throw new GraphQLRequestError("ERROR", `${field} answered null`);
  return value;
}
