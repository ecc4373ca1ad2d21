// Runs the typed client against a server (jiti runs TypeScript directly; a bundler works too):
//   npm start -- http://127.0.0.1:8000/graphql you@example.com password123
// It signs up or in, creates a task, reads it back and lists the open tasks, like
// ../python_client.py.
import { TodoClient } from "./client";

const [url, email, password] = process.argv.slice(2);
if (!url || !email || !password) {
  console.error("usage: main.ts URL EMAIL PASSWORD");
  process.exit(2);
}
const client = new TodoClient(url);
await client.signUpOrSignIn(email, password);
const due = new Date(Date.now() + 86_400_000).toISOString();
const id = await client.createTask("Try the TypeScript client", "HIGH", due);
const task = await client.taskDetail(id);
if (!task) throw new Error(`task ${id} not found`);
console.log(
  `created '${task.title}' (${task.priority}, due ${task.dueDate}, overdue: ${task.isOverdue})`,
);
const titles = await client.openTaskTitles();
console.log(`${titles.length} open tasks: ${titles.join(", ")}`);
