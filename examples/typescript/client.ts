// A small typed client, checked by `tsc --noEmit` against types that GraphQL Code Generator
// produced from the live server's introspection (tests/test_clients.py). Run it with any
// fetch-capable runtime once `generated/graphql.ts` exists.
import type {
  CreateTaskMutation,
  CreateTaskMutationVariables,
  Priority,
  SignInMutation,
  SignInMutationVariables,
  TaskListQuery,
  TaskListQueryVariables,
} from "./generated/graphql";

type GraphQLError = { message: string; extensions?: { code?: string; field?: string } };
type Answer<T> = { data?: T | null; errors?: GraphQLError[] };

export class TodoClient {
  constructor(
    private readonly url: string,
    private token?: string,
  ) {}

  private async request<T, V>(query: string, variables: V): Promise<T> {
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (this.token) headers["Authorization"] = `Bearer ${this.token}`;
    const response = await fetch(this.url, {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
    });
    const answer = (await response.json()) as Answer<T>;
    if (answer.errors?.length) {
      const [first] = answer.errors;
      throw new Error(`${first.extensions?.code ?? "ERROR"}: ${first.message}`);
    }
    return answer.data as T;
  }

  async signIn(email: string, password: string): Promise<void> {
    const data = await this.request<SignInMutation, SignInMutationVariables>(
      `mutation SignIn($input: SignInInput!) { signIn(input: $input) { token user { id } } }`,
      { input: { email, password } },
    );
    this.token = data.signIn.token;
  }

  async createTask(title: string, priority: Priority, dueDate?: string): Promise<string> {
    const data = await this.request<CreateTaskMutation, CreateTaskMutationVariables>(
      `mutation CreateTask($input: CreateTaskInput!) { createTask(input: $input) { id } }`,
      { input: { title, priority, dueDate: dueDate ?? null } },
    );
    return data.createTask.id;
  }

  async openTaskTitles(after?: string): Promise<{ titles: string[]; next?: string }> {
    const data = await this.request<TaskListQuery, TaskListQueryVariables>(
      `query TaskList($filter: TaskFilter, $first: Int, $after: String) {
         tasks(filter: $filter, first: $first, after: $after) {
           pageInfo { hasNextPage endCursor }
           edges { node { title } }
         }
       }`,
      { filter: { completed: false }, first: 20, after: after ?? null },
    );
    const { edges, pageInfo } = data.tasks;
    return {
      titles: edges.map((edge) => edge.node.title),
      next: pageInfo.hasNextPage ? (pageInfo.endCursor ?? undefined) : undefined,
    };
  }
}
