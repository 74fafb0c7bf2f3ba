"""The recipes that build vzexp's shipped models, one package per model: the code only that
model's recipe needs (its data, objectives, schema and entry function). Recipes use the library
(vzexp.data, vzexp.models, vzexp.engine, ...); the library never imports a recipe, and only the
task layer calls a recipe's entry function."""
