//! Listings as crictl prints them: in columns, each as wide as its widest cell and three
//! spaces from the next, so that a long image or name never runs into its neighbour; or
//! as JSON under one key.

const GAP: usize = 3;

/// An id as the listings show it.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(13)]
}

/// Prints `{"key": value}`, indented.
pub fn print_json(key: &str, value: impl serde::Serialize) -> anyhow::Result<()> {
    let mut object = serde_json::Map::new();
    object.insert(key.to_string(), serde_json::to_value(value)?);
    println!("{}", serde_json::to_string_pretty(&object)?);
    Ok(())
}

/// Runs `call` for each id in turn and prints `done` followed by the id after each; the
/// first failure ends the run.
pub async fn for_each_id(
    ids: Vec<String>,
    done: &str,
    mut call: impl AsyncFnMut(String) -> Result<(), tonic::Status>,
) -> anyhow::Result<()> {
    for id in ids {
        call(id.clone()).await?;
        println!("{done}{id}");
    }
    Ok(())
}

pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c] - cell.chars().count() + GAP;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell() {
        let mut t = Table::new(&["ID", "IMAGE", "STATE"]);
        t.row(vec![
            "abc".into(),
            "127.0.0.1:5000/criox/busybox:latest".into(),
            "RUNNING".into(),
        ]);
        t.row(vec!["d".into(), "pause".into(), "EXITED".into()]);
        assert_eq!(
            t.render(),
            "ID    IMAGE                                 STATE\n\
             abc   127.0.0.1:5000/criox/busybox:latest   RUNNING\n\
             d     pause                                 EXITED\n"
        );
    }

    #[test]
    fn empty_last_cells_leave_no_trailing_spaces() {
        let mut t = Table::new(&["POD ID", "RUNTIME"]);
        t.row(vec!["abc".into(), String::new()]);
        assert_eq!(t.render(), "POD ID   RUNTIME\nabc\n");
    }
}
